//! The chat.db DDL: the tables and columns of macOS Messages that imsg reads, with their real
//! names, types and defaults, plus two side tables of our own (`fake_imsg_meta`,
//! `fake_imsg_contact`) that real imsg never looks at.

/// Tables, in the shape Messages writes them (macOS 14/15 column names and defaults).
pub const SCHEMA: &str = r#"
CREATE TABLE handle (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE,
    id TEXT NOT NULL,
    country TEXT,
    service TEXT NOT NULL,
    uncanonicalized_id TEXT,
    person_centric_id TEXT,
    UNIQUE (id, service)
);
CREATE TABLE chat (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    guid TEXT UNIQUE NOT NULL,
    style INTEGER,
    state INTEGER,
    account_id TEXT,
    properties BLOB,
    chat_identifier TEXT,
    service_name TEXT,
    room_name TEXT,
    account_login TEXT,
    is_archived INTEGER DEFAULT 0,
    last_addressed_handle TEXT,
    display_name TEXT,
    group_id TEXT,
    is_filtered INTEGER DEFAULT 0,
    successful_query INTEGER,
    last_read_message_timestamp INTEGER DEFAULT 0
);
CREATE TABLE message (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    guid TEXT UNIQUE NOT NULL,
    text TEXT,
    replace INTEGER DEFAULT 0,
    service_center TEXT,
    handle_id INTEGER DEFAULT 0,
    subject TEXT,
    country TEXT,
    attributedBody BLOB,
    version INTEGER DEFAULT 0,
    type INTEGER DEFAULT 0,
    service TEXT,
    account TEXT,
    account_guid TEXT,
    error INTEGER DEFAULT 0,
    date INTEGER,
    date_read INTEGER,
    date_delivered INTEGER,
    is_delivered INTEGER DEFAULT 0,
    is_finished INTEGER DEFAULT 0,
    is_emote INTEGER DEFAULT 0,
    is_from_me INTEGER DEFAULT 0,
    is_empty INTEGER DEFAULT 0,
    is_delayed INTEGER DEFAULT 0,
    is_auto_reply INTEGER DEFAULT 0,
    is_prepared INTEGER DEFAULT 0,
    is_read INTEGER DEFAULT 0,
    is_system_message INTEGER DEFAULT 0,
    is_sent INTEGER DEFAULT 0,
    has_dd_results INTEGER DEFAULT 0,
    is_service_message INTEGER DEFAULT 0,
    is_forward INTEGER DEFAULT 0,
    was_downgraded INTEGER DEFAULT 0,
    is_archive INTEGER DEFAULT 0,
    cache_has_attachments INTEGER DEFAULT 0,
    cache_roomnames TEXT,
    was_data_detected INTEGER DEFAULT 0,
    was_deduplicated INTEGER DEFAULT 0,
    is_audio_message INTEGER DEFAULT 0,
    is_played INTEGER DEFAULT 0,
    date_played INTEGER,
    item_type INTEGER DEFAULT 0,
    other_handle INTEGER DEFAULT 0,
    group_title TEXT,
    group_action_type INTEGER DEFAULT 0,
    share_status INTEGER DEFAULT 0,
    share_direction INTEGER DEFAULT 0,
    is_expirable INTEGER DEFAULT 0,
    expire_state INTEGER DEFAULT 0,
    message_action_type INTEGER DEFAULT 0,
    message_source INTEGER DEFAULT 0,
    associated_message_guid TEXT,
    associated_message_type INTEGER DEFAULT 0,
    balloon_bundle_id TEXT,
    payload_data BLOB,
    expressive_send_style_id TEXT,
    associated_message_range_location INTEGER DEFAULT 0,
    associated_message_range_length INTEGER DEFAULT 0,
    time_expressive_send_played INTEGER,
    message_summary_info BLOB,
    destination_caller_id TEXT,
    is_corrupt INTEGER DEFAULT 0,
    reply_to_guid TEXT,
    sort_id INTEGER,
    is_spam INTEGER DEFAULT 0,
    has_unseen_mention INTEGER DEFAULT 0,
    thread_originator_guid TEXT,
    thread_originator_part TEXT,
    date_retracted INTEGER DEFAULT 0,
    date_edited INTEGER DEFAULT 0,
    part_count INTEGER,
    associated_message_emoji TEXT DEFAULT NULL,
    schedule_type INTEGER DEFAULT 0,
    schedule_state INTEGER DEFAULT 0
);
CREATE TABLE chat_message_join (
    chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
    message_date INTEGER DEFAULT 0,
    PRIMARY KEY (chat_id, message_id)
);
CREATE TABLE chat_handle_join (
    chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
    handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE,
    UNIQUE (chat_id, handle_id)
);
CREATE TABLE attachment (
    ROWID INTEGER PRIMARY KEY AUTOINCREMENT,
    guid TEXT UNIQUE NOT NULL,
    created_date INTEGER DEFAULT 0,
    start_date INTEGER DEFAULT 0,
    filename TEXT,
    uti TEXT,
    mime_type TEXT,
    transfer_state INTEGER DEFAULT 0,
    is_outgoing INTEGER DEFAULT 0,
    user_info BLOB,
    transfer_name TEXT,
    total_bytes INTEGER DEFAULT 0,
    is_sticker INTEGER DEFAULT 0,
    sticker_user_info BLOB,
    attribution_info BLOB,
    hide_attachment INTEGER DEFAULT 0,
    original_guid TEXT UNIQUE NOT NULL
);
CREATE TABLE message_attachment_join (
    message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
    attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE,
    UNIQUE (message_id, attachment_id)
);
CREATE INDEX message_idx_date ON message (date);
CREATE INDEX message_idx_associated_message ON message (associated_message_guid);
CREATE INDEX message_idx_is_from_me ON message (is_from_me);
CREATE INDEX chat_message_join_idx_message_id_chat_id ON chat_message_join (message_id, chat_id);
CREATE INDEX chat_message_join_idx_chat_date ON chat_message_join (chat_id, message_date);
CREATE INDEX chat_handle_join_idx_handle_id ON chat_handle_join (handle_id);
CREATE INDEX message_attachment_join_idx_message_id ON message_attachment_join (message_id);
CREATE INDEX message_idx_is_read ON message (is_read, is_from_me, is_finished);
CREATE INDEX fake_imsg_message_idx_reaction_target
    ON message (substr(associated_message_guid, instr(associated_message_guid, '/') + 1))
    WHERE associated_message_type BETWEEN 2000 AND 3006;

CREATE TABLE fake_imsg_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fake_imsg_contact (handle TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX fake_imsg_contact_idx_handle_nocase ON fake_imsg_contact (handle COLLATE NOCASE);
"#;

/// An index the hot reads rely on, added when a world is opened if the file lacks it.
#[derive(Debug)]
pub struct ReadIndex {
    pub name: &'static str,
    pub table: &'static str,
    /// Columns that must exist (an older chat.db may lack some).
    pub columns: &'static [&'static str],
    pub sql: &'static str,
}

/// Indexes added to worlds made before they were in `SCHEMA`, and to copies of a real chat.db
/// (which has `message_idx_is_read` under the same name and shape). Each is also in `SCHEMA`.
pub const READ_INDEXES: &[ReadIndex] = &[
    // Unread counts walk only the inbound unread rows.
    ReadIndex {
        name: "message_idx_is_read",
        table: "message",
        columns: &["is_read", "is_from_me", "is_finished"],
        sql: "CREATE INDEX IF NOT EXISTS message_idx_is_read
              ON message (is_read, is_from_me, is_finished)",
    },
    // A message's chats (its lowest chat_id, the unread counts per chat) from the index alone.
    // It serves every lookup by message_id; worlds made before it keep their
    // message_id-only index as well.
    ReadIndex {
        name: "chat_message_join_idx_message_id_chat_id",
        table: "chat_message_join",
        columns: &["message_id", "chat_id"],
        sql: "CREATE INDEX IF NOT EXISTS chat_message_join_idx_message_id_chat_id
              ON chat_message_join (message_id, chat_id)",
    },
    // A message's tapbacks by the guid they target (`p:0/<guid>`, or a bare guid), as
    // `World::reactions_for` asks for them with every payload that carries reactions: without
    // it that is a scan of the whole message table per message.
    ReadIndex {
        name: "fake_imsg_message_idx_reaction_target",
        table: "message",
        columns: &["associated_message_guid", "associated_message_type"],
        sql: "CREATE INDEX IF NOT EXISTS fake_imsg_message_idx_reaction_target
              ON message (substr(associated_message_guid, instr(associated_message_guid, '/') + 1))
              WHERE associated_message_type BETWEEN 2000 AND 3006",
    },
    // Contact names are matched case-insensitively.
    ReadIndex {
        name: "fake_imsg_contact_idx_handle_nocase",
        table: "fake_imsg_contact",
        columns: &["handle"],
        sql: "CREATE INDEX IF NOT EXISTS fake_imsg_contact_idx_handle_nocase
              ON fake_imsg_contact (handle COLLATE NOCASE)",
    },
];
