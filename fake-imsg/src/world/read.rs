//! Reads: chats, messages (with sender, lowest chat join and attachments), history,
//! catch-up after a ROWID, and the current reaction state of a message.

use std::collections::HashMap;

use rusqlite::{
    params_from_iter,
    types::{Type, Value},
    Row,
};

use super::{AttachmentRow, ChatRow, HistoryQuery, MessageRow, Result, World};

/// Optional `message` columns read as NULL when a (real, older) chat.db lacks them.
const OPTIONAL_MESSAGE_COLS: &[&str] = &[
    "is_read",
    "date_read",
    "service",
    "associated_message_guid",
    "associated_message_type",
    "associated_message_emoji",
    "thread_originator_guid",
    "thread_originator_part",
    "reply_to_guid",
    "destination_caller_id",
    "balloon_bundle_id",
    "attributedBody",
];

/// Columns 0..=7 of a `ChatRow`, from `chat c`.
const CHAT_COLS: &str = "c.ROWID, IFNULL(c.guid, ''), IFNULL(c.chat_identifier, ''),
    c.display_name, IFNULL(c.service_name, ''), c.account_id, c.account_login,
    c.last_addressed_handle";

/// Newest message_date of chat `c` (one index seek on chat_message_join (chat_id, message_date)).
const LAST_DATE: &str =
    "(SELECT MAX(j.message_date) FROM chat_message_join j WHERE j.chat_id = c.ROWID)";

/// The handle.id values of chat `c` (via chat_handle_join) as a JSON array, in one seek per
/// handle; `participants_from_json` sorts and dedupes them.
const PARTICIPANTS: &str = "(SELECT json_group_array(h.id)
    FROM chat_handle_join j JOIN handle h ON h.ROWID = j.handle_id
    WHERE j.chat_id = c.ROWID AND h.id IS NOT NULL AND h.id <> '')";

/// The tapback rows of the message whose guid is `?1`. The part after the first '/' (the whole
/// guid when there is none) is what `fake_imsg_message_idx_reaction_target` indexes, in the
/// same words, so SQLite uses it; guids hold no '/', so first and last '/' are the same.
const REACTIONS_OF: &str =
    "WHERE substr(m.associated_message_guid, instr(m.associated_message_guid, '/') + 1) = ?1
       AND m.associated_message_type BETWEEN 2000 AND 3006";

/// Inbound unread rows of chat `c`; with `message_idx_is_read` SQLite walks only the unread
/// rows instead of every message of the chat.
const UNREAD_ONE: &str =
    "(SELECT COUNT(*) FROM chat_message_join j JOIN message m ON m.ROWID = j.message_id
    WHERE j.chat_id = c.ROWID AND m.is_from_me = 0 AND m.is_read = 0)";

impl World {
    fn message_select(&self) -> String {
        let col = |name: &str| {
            if self.message_cols.contains(name) || !OPTIONAL_MESSAGE_COLS.contains(&name) {
                format!("m.{name}")
            } else {
                "NULL".to_string()
            }
        };
        format!(
            "SELECT m.ROWID, IFNULL(m.guid, ''),
                (SELECT MIN(j.chat_id) FROM chat_message_join j WHERE j.message_id = m.ROWID),
                IFNULL(h.id, ''), IFNULL(m.is_from_me, 0), IFNULL(m.text, ''), IFNULL(m.date, 0),
                IFNULL({is_read}, 0), IFNULL({date_read}, 0), IFNULL({service}, ''),
                {amg}, IFNULL({amt}, 0), {ame}, {tog}, {top}, {rtg}, {dci}, {bbi}, {ab}
             FROM message m LEFT JOIN handle h ON h.ROWID = m.handle_id",
            is_read = col("is_read"),
            date_read = col("date_read"),
            service = col("service"),
            amg = col("associated_message_guid"),
            amt = col("associated_message_type"),
            ame = col("associated_message_emoji"),
            tog = col("thread_originator_guid"),
            top = col("thread_originator_part"),
            rtg = col("reply_to_guid"),
            dci = col("destination_caller_id"),
            bbi = col("balloon_bundle_id"),
            ab = col("attributedBody"),
        )
    }

    fn query_messages(&self, tail: &str, params: Vec<Value>) -> Result<Vec<MessageRow>> {
        let sql = format!("{} {tail}", self.message_select());
        let mut stmt = self.conn().prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params_from_iter(params), message_from_row)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        drop(stmt);
        self.fill_attachments(rows)
    }

    /// Sets `attachments` of the messages, with one query for all of them (attachment ROWID
    /// order within a message).
    fn fill_attachments(&self, mut rows: Vec<MessageRow>) -> Result<Vec<MessageRow>> {
        if rows.len() <= 1 {
            for m in &mut rows {
                m.attachments = self.attachments_of(m.id)?;
            }
            return Ok(rows);
        }
        let ids = rows
            .iter()
            .map(|m| m.id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT j.message_id, a.ROWID, IFNULL(a.filename, ''), IFNULL(a.transfer_name, ''),
                    IFNULL(a.uti, ''), IFNULL(a.mime_type, ''), IFNULL(a.total_bytes, 0),
                    IFNULL(a.is_sticker, 0)
                 FROM message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id
                 WHERE j.message_id IN (SELECT value FROM json_each(?1))
                 ORDER BY j.message_id, a.ROWID",
            )
            .map_err(|e| self.err(e))?;
        let found = stmt
            .query_map([format!("[{ids}]")], |r| {
                Ok((r.get::<_, i64>(0)?, attachment_from_row(r, 1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        if !found.is_empty() {
            let mut by_message: HashMap<i64, Vec<AttachmentRow>> = HashMap::new();
            for (message_id, a) in found {
                by_message.entry(message_id).or_default().push(a);
            }
            for m in &mut rows {
                if let Some(list) = by_message.remove(&m.id) {
                    m.attachments = list;
                }
            }
        }
        Ok(rows)
    }

    fn attachments_of(&self, message_id: i64) -> Result<Vec<AttachmentRow>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT a.ROWID, IFNULL(a.filename, ''), IFNULL(a.transfer_name, ''),
                    IFNULL(a.uti, ''), IFNULL(a.mime_type, ''), IFNULL(a.total_bytes, 0),
                    IFNULL(a.is_sticker, 0)
                 FROM message_attachment_join j JOIN attachment a ON a.ROWID = j.attachment_id
                 WHERE j.message_id = ?1 ORDER BY a.ROWID",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([message_id], |r| attachment_from_row(r, 0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Runs a chat query whose columns are `CHAT_COLS`, last date, unread count, contact name
    /// and `PARTICIPANTS`, stepping only until `limit` rows that `keep` accepts (it may also
    /// fill in fields) have been read.
    fn run_chat_query(
        &self,
        sql: &str,
        params: Vec<Value>,
        limit: usize,
        mut keep: impl FnMut(&mut ChatRow) -> bool,
    ) -> Result<Vec<ChatRow>> {
        let mut stmt = self.conn().prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = stmt
            .query(params_from_iter(params))
            .map_err(|e| self.err(e))?;
        let mut chats = Vec::new();
        while chats.len() < limit {
            let Some(r) = rows.next().map_err(|e| self.err(e))? else {
                break;
            };
            let mut chat = chat_from_row(r).map_err(|e| self.err(e))?;
            if keep(&mut chat) {
                chats.push(chat);
            }
        }
        Ok(chats)
    }

    /// Chats selected by `tail` (a WHERE/ORDER/LIMIT over `chat c`), each counted on its own:
    /// for lookups of one chat.
    fn query_chats(&self, tail: &str, params: Vec<Value>) -> Result<Vec<ChatRow>> {
        self.query_chats_counting(tail, params, true)
    }

    /// [`World::query_chats`]; `unread: false` leaves `unread_count` at 0, which costs a walk
    /// over the chat's unread rows that a send, growing with the world, must not pay.
    fn query_chats_counting(
        &self,
        tail: &str,
        params: Vec<Value>,
        unread: bool,
    ) -> Result<Vec<ChatRow>> {
        let unread = if unread && self.has_read_state() {
            UNREAD_ONE
        } else {
            "0"
        };
        let sql = format!(
            "SELECT {CHAT_COLS}, {LAST_DATE}, {unread}, {contact}, {PARTICIPANTS}
             FROM chat c {tail}",
            contact = self.contact_expr()
        );
        self.run_chat_query(&sql, params, usize::MAX, |_| true)
    }

    /// The world's contact name of a direct chat's identifier, as `World::contact_name` finds
    /// it (NULL for groups, empty identifiers, or a chat.db without our side tables).
    fn contact_expr(&self) -> &'static str {
        if self.has_side_tables.get() {
            "CASE WHEN instr(IFNULL(c.guid, ''), ';+;') > 0
                    OR instr(IFNULL(c.chat_identifier, ''), ';+;') > 0
                    OR IFNULL(c.chat_identifier, '') = '' THEN NULL
               ELSE (SELECT k.name FROM fake_imsg_contact k
                     WHERE k.handle = c.chat_identifier COLLATE NOCASE) END"
        } else {
            "NULL"
        }
    }

    /// The chat with this ROWID.
    pub fn chat(&self, id: i64) -> Result<Option<ChatRow>> {
        Ok(self
            .query_chats("WHERE c.ROWID = ?1", vec![id.into()])?
            .pop())
    }

    /// The chat with this ROWID, without its unread count (0): for sends and message
    /// payloads, which carry no count and must not pay a walk over the chat's unread rows.
    pub fn chat_uncounted(&self, id: i64) -> Result<Option<ChatRow>> {
        Ok(self
            .query_chats_counting("WHERE c.ROWID = ?1", vec![id.into()], false)?
            .pop())
    }

    /// The chat with this ROWID as a send reads it: its own columns and participants, without
    /// the last message date (`None`), unread count (0) or contact name (`None`), which no send
    /// result nor written row carries; a send pays neither the chat_message_join seek nor the
    /// contact lookup.
    pub fn chat_for_send(&self, id: i64) -> Result<Option<ChatRow>> {
        let sql = format!(
            "SELECT {CHAT_COLS}, NULL, 0, NULL, {PARTICIPANTS} FROM chat c WHERE c.ROWID = ?1"
        );
        Ok(self
            .run_chat_query(&sql, vec![id.into()], 1, |_| true)?
            .pop())
    }

    /// The chat with this guid (exact).
    pub fn chat_by_guid(&self, guid: &str) -> Result<Option<ChatRow>> {
        Ok(self
            .query_chats(
                "WHERE c.guid = ?1 ORDER BY c.ROWID LIMIT 1",
                vec![guid.to_string().into()],
            )?
            .pop())
    }

    /// The chat with this chat_identifier (lowest ROWID if several services share it).
    pub fn chat_by_identifier(&self, identifier: &str) -> Result<Option<ChatRow>> {
        Ok(self
            .query_chats(
                "WHERE c.chat_identifier = ?1 ORDER BY c.ROWID LIMIT 1",
                vec![identifier.to_string().into()],
            )?
            .pop())
    }

    /// The direct chat with `handle` on the first of `services` that has one
    /// (`<service>;-;<handle>`, else a non-group chat whose identifier is the handle).
    pub fn direct_chat_for_handle(
        &self,
        handle: &str,
        services: &[&str],
    ) -> Result<Option<ChatRow>> {
        for service in services {
            if let Some(c) = self.chat_by_guid(&format!("{service};-;{handle}"))? {
                return Ok(Some(c));
            }
            let found = self.query_chats(
                "WHERE c.chat_identifier = ?1 COLLATE NOCASE AND c.service_name = ?2
                   AND IFNULL(c.guid, '') NOT LIKE '%;+;%' ORDER BY c.ROWID LIMIT 1",
                vec![handle.to_string().into(), service.to_string().into()],
            )?;
            if let Some(c) = found.into_iter().next() {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Chats with at least one message, newest activity first.
    pub fn chats(&self, limit: usize, unread_only: bool) -> Result<Vec<ChatRow>> {
        if unread_only && !self.has_read_state() {
            return Ok(Vec::new());
        }
        let unread = self.unread_counts()?;
        // The ordered ids and last dates come from a subquery that SQLite runs as a co-routine
        // (its `LIMIT -1` keeps it from being flattened), so the outer row's contact name and
        // participants are only computed for the rows read. The limit is not bound as a
        // parameter: SQLite re-prepares a statement whose LIMIT is a bound value on every run,
        // which cost more than the query.
        let sql = format!(
            "SELECT {CHAT_COLS}, p.last_date, 0, {contact}, {PARTICIPANTS}
             FROM (SELECT c.ROWID AS id, {LAST_DATE} AS last_date FROM chat c
                   WHERE EXISTS (SELECT 1 FROM chat_message_join j WHERE j.chat_id = c.ROWID)
                   ORDER BY last_date DESC, c.ROWID DESC LIMIT -1) p
             JOIN chat c ON c.ROWID = p.id
             ORDER BY p.last_date DESC, p.id DESC",
            contact = self.contact_expr()
        );
        self.run_chat_query(&sql, vec![], limit, |c| {
            c.unread_count = unread.get(&c.id).copied().unwrap_or(0);
            !unread_only || c.unread_count > 0
        })
    }

    /// Inbound unread rows per chat (chats with none are absent), in one pass over the unread
    /// rows, which `message_idx_is_read` keeps few to visit.
    fn unread_counts(&self) -> Result<HashMap<i64, i64>> {
        if !self.has_read_state() {
            return Ok(HashMap::new());
        }
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT j.chat_id, COUNT(*)
                 FROM message m JOIN chat_message_join j ON j.message_id = m.ROWID
                 WHERE m.is_from_me = 0 AND m.is_read = 0 GROUP BY j.chat_id",
            )
            .map_err(|e| self.err(e))?;
        let counts = stmt
            .query_map([], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.err(e))?
            .filter_map(|r| match r {
                Ok((Some(chat), n)) => Some(Ok((chat, n))),
                Ok((None, _)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(|e| self.err(e))?;
        Ok(counts)
    }

    /// Every chat, by ROWID.
    pub fn all_chats(&self) -> Result<Vec<ChatRow>> {
        let unread = self.unread_counts()?;
        let sql = format!(
            "SELECT {CHAT_COLS}, {LAST_DATE}, 0, {contact}, {PARTICIPANTS}
             FROM chat c ORDER BY c.ROWID",
            contact = self.contact_expr()
        );
        self.run_chat_query(&sql, vec![], usize::MAX, |c| {
            c.unread_count = unread.get(&c.id).copied().unwrap_or(0);
            true
        })
    }

    /// The message with this ROWID.
    pub fn message(&self, rowid: i64) -> Result<Option<MessageRow>> {
        Ok(self
            .query_messages("WHERE m.ROWID = ?1", vec![rowid.into()])?
            .pop())
    }

    /// The message with this guid (a `p:N/` prefix is ignored).
    pub fn message_by_guid(&self, guid: &str) -> Result<Option<MessageRow>> {
        let guid = strip_part_prefix(guid);
        Ok(self
            .query_messages("WHERE m.guid = ?1", vec![guid.to_string().into()])?
            .pop())
    }

    /// ROWID > since_rowid, ROWID ascending, at most `limit` rows; includes unjoined rows
    /// (chat_id None) unless chat_id is given; reactions only if include_reactions.
    pub fn messages_after(
        &self,
        since_rowid: i64,
        chat_id: Option<i64>,
        limit: usize,
        include_reactions: bool,
    ) -> Result<Vec<MessageRow>> {
        let mut tail = String::from("WHERE m.ROWID > ?1");
        let mut params: Vec<Value> = vec![since_rowid.into()];
        if let Some(chat) = chat_id {
            tail.push_str(
                " AND EXISTS (SELECT 1 FROM chat_message_join j WHERE j.message_id = m.ROWID AND j.chat_id = ?2)",
            );
            params.push(chat.into());
        }
        if !include_reactions {
            tail.push_str(&format!(" AND NOT {}", self.reaction_cond()));
        }
        tail.push_str(&format!(
            " ORDER BY m.ROWID ASC LIMIT {}",
            clamp_limit(limit)
        ));
        let mut rows = self.query_messages(&tail, params)?;
        if let Some(chat) = chat_id {
            for m in &mut rows {
                m.chat_id = Some(chat);
            }
        }
        Ok(rows)
    }

    /// Messages of one chat, newest first (equal dates: higher ROWID first), no reaction rows.
    /// Filters apply before the limit. Every row reports the requested chat_id.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<MessageRow>> {
        // The page of ROWIDs is chosen from narrow columns first; the wide row (subqueries,
        // attributedBody) is then read only for the rows returned, not for every row sorted.
        let mut tail = String::from(
            "SELECT m.ROWID FROM message m LEFT JOIN handle h ON h.ROWID = m.handle_id
             JOIN chat_message_join cj ON cj.message_id = m.ROWID AND cj.chat_id = ?1 WHERE 1",
        );
        let mut params: Vec<Value> = vec![q.chat_id.into()];
        tail.push_str(&format!(" AND NOT {}", self.reaction_cond()));
        if let Some(start) = q.start {
            params.push(start.into());
            tail.push_str(&format!(" AND IFNULL(m.date, 0) >= ?{}", params.len()));
        }
        if let Some(end) = q.end {
            params.push(end.into());
            tail.push_str(&format!(" AND IFNULL(m.date, 0) < ?{}", params.len()));
        }
        let wanted: Vec<&String> = q.participants.iter().filter(|p| !p.is_empty()).collect();
        if !wanted.is_empty() {
            let sender = if self.message_cols.contains("destination_caller_id") {
                "COALESCE(NULLIF(h.id, ''), m.destination_caller_id, '')"
            } else {
                "IFNULL(h.id, '')"
            };
            let mut marks = Vec::new();
            for p in wanted {
                params.push(p.to_lowercase().into());
                marks.push(format!("?{}", params.len()));
            }
            tail.push_str(&format!(" AND lower({sender}) IN ({})", marks.join(", ")));
        }
        let tail = format!(
            "WHERE m.ROWID IN ({tail} ORDER BY m.date DESC, m.ROWID DESC LIMIT {})
             ORDER BY m.date DESC, m.ROWID DESC",
            clamp_limit(q.limit)
        );
        let mut rows = self.query_messages(&tail, params)?;
        for m in &mut rows {
            m.chat_id = Some(q.chat_id);
        }
        Ok(rows)
    }

    /// Tapback rows targeting the message, as its current reaction state, oldest first:
    /// a repeated add by the same sender, direction and type replaces the earlier entry in
    /// place; a removal (3000-3005) deletes the matching add; 3006 deletes that sender's first
    /// custom reaction.
    pub fn reactions_for(&self, message_guid: &str) -> Result<Vec<MessageRow>> {
        if !self.message_cols.contains("associated_message_guid")
            || !self.message_cols.contains("associated_message_type")
        {
            return Ok(Vec::new());
        }
        let guid = strip_part_prefix(message_guid);
        if guid.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.query_messages(
            &format!("{REACTIONS_OF} ORDER BY m.ROWID ASC"),
            vec![guid.to_string().into()],
        )?;
        Ok(fold_reactions(rows))
    }

    fn reaction_cond(&self) -> &'static str {
        if self.message_cols.contains("associated_message_type") {
            "(IFNULL(m.associated_message_type, 0) BETWEEN 2000 AND 3006)"
        } else {
            "0"
        }
    }

    /// Outgoing (is_from_me = 1) rows after `since_rowid`, ROWID ascending.
    pub fn sent(&self, since_rowid: i64) -> Result<Vec<MessageRow>> {
        self.query_messages(
            "WHERE m.ROWID > ?1 AND m.is_from_me = 1 ORDER BY m.ROWID ASC",
            vec![since_rowid.into()],
        )
    }
}

/// The current reaction state from tapback rows in ROWID order (see `World::reactions_for`).
pub fn fold_reactions(rows: Vec<MessageRow>) -> Vec<MessageRow> {
    let mut state: Vec<MessageRow> = Vec::new();
    let same_actor = |a: &MessageRow, b: &MessageRow| {
        a.is_from_me == b.is_from_me && a.sender.eq_ignore_ascii_case(&b.sender)
    };
    for row in rows {
        let t = row.associated_message_type;
        match t {
            2000..=2006 => {
                if let Some(slot) = state
                    .iter_mut()
                    .find(|s| s.associated_message_type == t && same_actor(s, &row))
                {
                    *slot = row;
                } else {
                    state.push(row);
                }
            }
            3000..=3006 => {
                let add = t - 1000;
                if let Some(pos) = state
                    .iter()
                    .position(|s| s.associated_message_type == add && same_actor(s, &row))
                {
                    state.remove(pos);
                }
            }
            _ => {}
        }
    }
    state
}

/// `p:0/ABC` -> `ABC`; anything up to the last `/` is dropped.
pub fn strip_part_prefix(guid: &str) -> &str {
    match guid.rfind('/') {
        Some(i) => &guid[i + 1..],
        None => guid,
    }
}

fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let handle: String = r.get(3)?;
    let dci: Option<String> = r.get(16)?;
    let sender = if !handle.is_empty() {
        handle
    } else {
        dci.clone().unwrap_or_default()
    };
    let mut text: String = r.get(5)?;
    if text.is_empty() {
        if let Ok(Some(body)) = r.get::<_, Option<Vec<u8>>>(18) {
            text = super::typedstream::text_from_attributed_body(&body).unwrap_or_default();
        }
    }
    Ok(MessageRow {
        id: r.get(0)?,
        guid: r.get(1)?,
        chat_id: r.get(2)?,
        sender,
        is_from_me: r.get::<_, i64>(4)? != 0,
        text,
        date: r.get(6)?,
        is_read: r.get::<_, i64>(7)? != 0,
        date_read: r.get(8)?,
        service: r.get(9)?,
        associated_message_guid: non_empty(r.get(10)?),
        associated_message_type: r.get(11)?,
        associated_message_emoji: non_empty(r.get(12)?),
        thread_originator_guid: non_empty(r.get(13)?),
        thread_originator_part: non_empty(r.get(14)?),
        reply_to_guid: non_empty(r.get(15)?),
        destination_caller_id: non_empty(dci),
        balloon_bundle_id: non_empty(r.get(17)?),
        attachments: Vec::new(),
    })
}

/// `PARTICIPANTS` as a sorted, deduped list. Rust's byte order on UTF-8 is SQLite's BINARY
/// collation, so this is the order `ORDER BY h.id` gives.
fn participants_from_json(json: &str) -> rusqlite::Result<Vec<String>> {
    let mut handles: Vec<String> = serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(11, Type::Text, Box::new(e)))?;
    handles.sort_unstable();
    handles.dedup();
    Ok(handles)
}

/// An `AttachmentRow` from the seven attachment columns starting at `at`.
fn attachment_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        rowid: r.get(at)?,
        filename: r.get(at + 1)?,
        transfer_name: r.get(at + 2)?,
        uti: r.get(at + 3)?,
        mime_type: r.get(at + 4)?,
        total_bytes: r.get(at + 5)?,
        is_sticker: r.get::<_, i64>(at + 6)? != 0,
    })
}

/// A `ChatRow` from `CHAT_COLS`, last date, unread count, contact name and `PARTICIPANTS`.
fn chat_from_row(r: &Row<'_>) -> rusqlite::Result<ChatRow> {
    Ok(ChatRow {
        id: r.get(0)?,
        guid: r.get(1)?,
        identifier: r.get(2)?,
        display_name: r.get(3)?,
        service: r.get(4)?,
        participants: participants_from_json(r.get_ref(11)?.as_str()?)?,
        account_id: r.get(5)?,
        account_login: r.get(6)?,
        last_addressed_handle: r.get(7)?,
        last_message_date: r.get(8)?,
        unread_count: r.get(9)?,
        contact_name: r.get(10)?,
    })
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_world(dir: &std::path::Path) -> World {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/worlds/busy.json5");
        World::build_from_scenario_file(&fixture, &dir.join("chat.db")).unwrap()
    }

    #[test]
    fn the_chat_list_agrees_with_one_chat_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let w = busy_world(dir.path());
        let all = w.chats(usize::MAX, false).unwrap();
        assert!(all.len() > 20, "the fixture has many chats");
        assert!(all.iter().any(|c| c.unread_count > 0));
        assert!(all.iter().any(|c| c.contact_name.is_some()));
        assert!(all.iter().any(|c| c.participants.len() > 2));
        for c in &all {
            assert_eq!(Some(c), w.chat(c.id).unwrap().as_ref());
        }
        let by_id = w.all_chats().unwrap();
        for c in &all {
            assert_eq!(Some(c), by_id.iter().find(|b| b.id == c.id));
        }
        for pair in all.windows(2) {
            assert!(
                (pair[0].last_message_date, pair[0].id) > (pair[1].last_message_date, pair[1].id),
                "newest first, then higher ROWID"
            );
        }
        assert_eq!(w.chats(5, false).unwrap(), all[..5].to_vec());
        let unread: Vec<ChatRow> = all.iter().filter(|c| c.unread_count > 0).cloned().collect();
        assert_eq!(w.chats(usize::MAX, true).unwrap(), unread);
        assert_eq!(w.chats(1, true).unwrap(), unread[..1].to_vec());
        assert!(w.chats(0, false).unwrap().is_empty());
    }

    #[test]
    fn a_messages_reactions_are_found_through_the_index_not_a_table_scan() {
        let dir = tempfile::tempdir().unwrap();
        let w = World::create(&dir.path().join("chat.db")).unwrap();
        let plan: Vec<String> = w
            .conn()
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT m.ROWID FROM message m {REACTIONS_OF}"
            ))
            .unwrap()
            .query_map(["ABC"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("fake_imsg_message_idx_reaction_target")),
            "{plan:?}"
        );
    }

    #[test]
    fn opening_a_world_without_the_read_indexes_adds_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chat.db");
        World::create(&p).unwrap();
        {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch(
                "DROP INDEX message_idx_is_read; DROP INDEX fake_imsg_contact_idx_handle_nocase;
                 DROP INDEX chat_message_join_idx_message_id_chat_id;
                 DROP INDEX fake_imsg_message_idx_reaction_target;",
            )
            .unwrap();
        }
        let w = World::open(&p).unwrap();
        for index in super::super::schema::READ_INDEXES {
            let n: i64 = w
                .conn()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
                    [index.name],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{} was not recreated", index.name);
        }
    }

    #[test]
    fn participants_are_sorted_in_sqlite_binary_order_and_deduped() {
        let got = participants_from_json(r#"["b@x.com","+1555","B@x.com","b@x.com","é"]"#).unwrap();
        assert_eq!(got, ["+1555", "B@x.com", "b@x.com", "é"]);
    }

    #[test]
    fn part_prefix_is_stripped_up_to_the_last_slash() {
        assert_eq!(strip_part_prefix("p:0/ABC-1"), "ABC-1");
        assert_eq!(strip_part_prefix("bp:1/x/DEF"), "DEF");
        assert_eq!(strip_part_prefix("ABC"), "ABC");
        assert_eq!(strip_part_prefix("p:0/"), "");
    }
}
