//! Writes: handles, chats, message rows with attachments, `inject`, `record_send` and
//! `join_message`. Each public write is one short `BEGIN IMMEDIATE` transaction so other
//! processes sharing the world never see half a message.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use super::{
    dates, tapback, ChatRow, InjectSpec, MessageRow, OutgoingSpec, Result, World, WorldError,
};

/// Where an attachment's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum AttachmentSource {
    /// Copy this file into the world's Attachments folder.
    Copy(PathBuf),
    /// Write `bytes` deterministic bytes under `name`.
    Synth {
        name: String,
        bytes: i64,
        mime: Option<String>,
    },
    /// Record the row only; the file is absent.
    Missing {
        name: String,
        bytes: i64,
        mime: Option<String>,
    },
}

/// A fully resolved message row to insert.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewMessage {
    pub guid: String,
    /// Chat to join; None leaves the row unjoined.
    pub join_chat: Option<i64>,
    pub handle_rowid: i64,
    pub is_from_me: bool,
    pub text: String,
    pub date: i64,
    pub is_read: bool,
    pub date_read: i64,
    pub service: String,
    pub associated_message_guid: Option<String>,
    pub associated_message_type: i64,
    pub associated_message_emoji: Option<String>,
    pub thread_originator_guid: Option<String>,
    pub thread_originator_part: Option<String>,
    pub reply_to_guid: Option<String>,
    pub destination_caller_id: Option<String>,
    pub account: Option<String>,
    pub attachments: Vec<(String, AttachmentSource)>,
    pub is_sticker: bool,
}

/// An uppercase UUID, the shape Messages uses for message and attachment guids.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// `chat` + 18 digits, the shape of a group chat_identifier.
pub(crate) fn new_group_identifier() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000_000u128;
    format!("chat{n:018}")
}

/// Uniform Type Identifier and MIME type guessed from a file name.
pub fn uti_and_mime(name: &str) -> (&'static str, &'static str) {
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => ("public.jpeg", "image/jpeg"),
        "png" => ("public.png", "image/png"),
        "heic" => ("public.heic", "image/heic"),
        "gif" => ("com.compuserve.gif", "image/gif"),
        "pdf" => ("com.adobe.pdf", "application/pdf"),
        "txt" => ("public.plain-text", "text/plain"),
        "mp4" => ("public.mpeg-4", "video/mp4"),
        "mov" => ("com.apple.quicktime-movie", "video/quicktime"),
        "caf" => ("com.apple.coreaudio-format", "audio/x-caf"),
        "m4a" => ("com.apple.m4a-audio", "audio/x-m4a"),
        "mp3" => ("public.mp3", "audio/mpeg"),
        "vcf" => ("public.vcard", "text/vcard"),
        "zip" => ("public.zip-archive", "application/zip"),
        _ => ("public.data", "application/octet-stream"),
    }
}

fn uti_for_mime(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "public.jpeg",
        "image/png" => "public.png",
        "image/heic" => "public.heic",
        "image/gif" => "com.compuserve.gif",
        "application/pdf" => "com.adobe.pdf",
        "text/plain" => "public.plain-text",
        "video/mp4" => "public.mpeg-4",
        "video/quicktime" => "com.apple.quicktime-movie",
        "audio/x-caf" => "com.apple.coreaudio-format",
        "audio/x-m4a" => "com.apple.m4a-audio",
        _ => "public.data",
    }
}

fn io_err(what: String, e: std::io::Error) -> WorldError {
    WorldError::Io(format!("{what}: {e}"))
}

/// A `BEGIN IMMEDIATE` transaction on a world's connection, rolled back if dropped without
/// `commit` (as rusqlite's `Transaction` is). Its statements are prepared once per
/// connection: parsing BEGIN and COMMIT afresh was a visible share of a `send`.
pub(crate) struct WriteTx<'w> {
    world: &'w World,
}

impl WriteTx<'_> {
    /// Commits: from here on other connections see the writes (and their `data_version`
    /// moves).
    pub(crate) fn commit(self) -> Result<()> {
        self.world.exec_cached("COMMIT")?;
        self.world.committed();
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // Uncommitted, or a COMMIT that failed and left the transaction open.
        if !self.world.conn().is_autocommit() {
            let _ = self.world.exec_cached("ROLLBACK");
        }
    }
}

impl World {
    pub(crate) fn begin(&self) -> Result<WriteTx<'_>> {
        self.exec_cached("BEGIN IMMEDIATE")?;
        Ok(WriteTx { world: self })
    }

    fn exec_cached(&self, sql: &str) -> Result<()> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The ROWID of handle (id, service), inserting it if new.
    pub(crate) fn ensure_handle(&self, id: &str, service: &str) -> Result<i64> {
        if id.trim().is_empty() {
            return Err(WorldError::Invalid("empty handle".into()));
        }
        let found: Option<i64> = self
            .conn()
            .prepare_cached("SELECT ROWID FROM handle WHERE id = ?1 AND service = ?2")
            .and_then(|mut s| s.query_row(params![id, service], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        if let Some(rowid) = found {
            return Ok(rowid);
        }
        let country = if id.starts_with("+1") {
            Some("us")
        } else {
            None
        };
        self.conn()
            .prepare_cached(
                "INSERT INTO handle (id, country, service, uncanonicalized_id, person_centric_id)
                 VALUES (?1, ?2, ?3, NULL, NULL)",
            )
            .and_then(|mut s| s.execute(params![id, country, service]))
            .map_err(|e| self.err(e))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Inserts a chat with its handle joins. DMs get `<service>;-;<handle>`; groups
    /// `<service>;+;<identifier>` with `identifier` defaulting to `chat<18 digits>`.
    pub(crate) fn insert_chat(
        &self,
        group: bool,
        service: &str,
        participants: &[String],
        display_name: Option<&str>,
        group_identifier: Option<String>,
    ) -> Result<i64> {
        if participants.is_empty() {
            return Err(WorldError::Invalid(
                "a chat needs at least one participant".into(),
            ));
        }
        if !group && participants.len() != 1 {
            return Err(WorldError::Invalid(format!(
                "a direct chat has exactly one participant, got {}",
                participants.len()
            )));
        }
        let (guid, identifier, style) = if group {
            let ident = group_identifier.unwrap_or_else(new_group_identifier);
            (format!("{service};+;{ident}"), ident, 43)
        } else {
            let h = &participants[0];
            (format!("{service};-;{h}"), h.clone(), 45)
        };
        let me = self.me();
        let login = me.as_ref().map(|m| {
            if m.contains('@') {
                format!("E:{m}")
            } else {
                format!("P:{m}")
            }
        });
        self.conn()
            .execute(
                "INSERT INTO chat (guid, style, state, account_id, chat_identifier, service_name,
                    room_name, account_login, is_archived, last_addressed_handle, display_name,
                    group_id, is_filtered, successful_query)
                 VALUES (?1, ?2, 3, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, 0, 1)",
                params![
                    guid,
                    style,
                    me.as_ref().map(|_| "7B3D2C1A-0000-4000-8000-000000000001"),
                    identifier,
                    service,
                    if group {
                        Some(identifier.as_str())
                    } else {
                        None
                    },
                    login,
                    me,
                    display_name,
                    new_guid(),
                ],
            )
            .map_err(|e| self.err(e))?;
        let chat_id = self.conn().last_insert_rowid();
        for p in participants {
            let h = self.ensure_handle(p, service)?;
            self.conn()
                .execute(
                    "INSERT OR IGNORE INTO chat_handle_join (chat_id, handle_id) VALUES (?1, ?2)",
                    params![chat_id, h],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(chat_id)
    }

    /// Inserts one message row (and its attachments and chat join); returns its ROWID.
    pub(crate) fn insert_message(&self, m: &NewMessage) -> Result<i64> {
        let has_attachments = !m.attachments.is_empty();
        let date_delivered = if m.is_from_me { m.date } else { 0 };
        self.conn()
            .prepare_cached(
                "INSERT INTO message (guid, text, handle_id, service, account, date, date_read,
                    date_delivered, is_delivered, is_finished, is_from_me, is_read, is_sent,
                    error, cache_has_attachments, item_type, associated_message_guid,
                    associated_message_type, associated_message_emoji, thread_originator_guid,
                    thread_originator_part, reply_to_guid, destination_caller_id, version, type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, 1, ?9, ?10, ?11, 0, ?12, 0, ?13, ?14,
                    ?15, ?16, ?17, ?18, ?19, 10, 0)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.guid,
                    m.text,
                    m.handle_rowid,
                    m.service,
                    m.account,
                    m.date,
                    m.date_read,
                    date_delivered,
                    m.is_from_me as i64,
                    m.is_read as i64,
                    m.is_from_me as i64,
                    has_attachments as i64,
                    m.associated_message_guid,
                    m.associated_message_type,
                    m.associated_message_emoji,
                    m.thread_originator_guid,
                    m.thread_originator_part,
                    m.reply_to_guid,
                    m.destination_caller_id,
                ])
            })
            .map_err(|e| self.err(e))?;
        let rowid = self.conn().last_insert_rowid();
        for (guid, source) in &m.attachments {
            let att = self.store_attachment(guid, source, m.date, m.is_from_me, m.is_sticker)?;
            self.conn()
                .execute(
                    "INSERT INTO message_attachment_join (message_id, attachment_id) VALUES (?1, ?2)",
                    params![rowid, att],
                )
                .map_err(|e| self.err(e))?;
        }
        if let Some(chat) = m.join_chat {
            self.join_rows(rowid, chat, m.date)?;
        }
        Ok(rowid)
    }

    fn join_rows(&self, rowid: i64, chat: i64, date: i64) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT OR IGNORE INTO chat_message_join (chat_id, message_id, message_date)
                 VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![chat, rowid, date]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Copies/synthesizes the file to `Attachments/<xx>/<GUID>/<name>` and inserts the row.
    fn store_attachment(
        &self,
        guid: &str,
        source: &AttachmentSource,
        date: i64,
        outgoing: bool,
        is_sticker: bool,
    ) -> Result<i64> {
        let (name, bytes, mime) = match source {
            AttachmentSource::Copy(p) => {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attachment".into());
                let len = std::fs::metadata(p)
                    .map_err(|e| io_err(format!("attachment file {}", p.display()), e))?
                    .len() as i64;
                (name, len, None)
            }
            AttachmentSource::Synth { name, bytes, mime }
            | AttachmentSource::Missing { name, bytes, mime } => {
                (name.clone(), *bytes, mime.clone())
            }
        };
        let (guess_uti, guess_mime) = uti_and_mime(&name);
        let (uti, mime) = match mime {
            Some(m) => {
                let u = if guess_mime == m {
                    guess_uti
                } else {
                    uti_for_mime(&m)
                };
                (u.to_string(), m)
            }
            None => (guess_uti.to_string(), guess_mime.to_string()),
        };
        let shard = guid[guid.len().saturating_sub(2)..].to_lowercase();
        let dest = self.attachments_dir().join(shard).join(guid).join(&name);
        match source {
            AttachmentSource::Copy(p) => {
                create_parent(&dest)?;
                std::fs::copy(p, &dest).map_err(|e| {
                    io_err(
                        format!("cannot copy {} to {}", p.display(), dest.display()),
                        e,
                    )
                })?;
            }
            AttachmentSource::Synth { .. } => {
                create_parent(&dest)?;
                let data: Vec<u8> = (0..bytes.max(0)).map(|i| (i % 251) as u8).collect();
                std::fs::write(&dest, data)
                    .map_err(|e| io_err(format!("cannot write {}", dest.display()), e))?;
            }
            AttachmentSource::Missing { .. } => {}
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO attachment (guid, created_date, start_date, filename, uti, mime_type,
                    transfer_state, is_outgoing, transfer_name, total_bytes, is_sticker, original_guid)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, 5, ?6, ?7, ?8, ?9, ?1)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    guid,
                    date / 1_000_000_000,
                    dest.to_string_lossy(),
                    uti,
                    mime,
                    outgoing as i64,
                    name,
                    bytes,
                    is_sticker as i64,
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Handle ROWID an outgoing row carries: the recipient in a DM, 0 in a group.
    fn outgoing_handle(&self, chat: &ChatRow) -> Result<i64> {
        if chat.is_group() {
            return Ok(0);
        }
        match chat.participants.first() {
            Some(h) => self.ensure_handle(h, &chat.service),
            None => Ok(0),
        }
    }

    /// Appends a message row (inbound by default) as Messages would on receipt.
    pub fn inject(&self, spec: &InjectSpec) -> Result<MessageRow> {
        if !spec.is_from_me && spec.from.trim().is_empty() {
            return Err(WorldError::Invalid(
                "inject needs a sender handle (from) unless is_from_me".into(),
            ));
        }
        for f in &spec.attachments {
            if !f.is_file() {
                return Err(WorldError::NotFound(format!(
                    "attachment file {} does not exist",
                    f.display()
                )));
            }
        }
        let tapback = match &spec.reaction {
            Some((kind, target)) => Some((tapback::parse_kind(kind)?, target.clone())),
            None => None,
        };
        let tx = self.begin()?;
        let chat = self.resolve_inject_chat(spec)?;
        let handle_rowid = if spec.is_from_me {
            self.outgoing_handle(&chat)?
        } else {
            self.ensure_handle(spec.from.trim(), &chat.service)?
        };
        let date = spec.date.unwrap_or_else(dates::now_apple_ns);
        let me = self.me();
        let mut m = NewMessage {
            guid: new_guid(),
            join_chat: if spec.unjoined { None } else { Some(chat.id) },
            handle_rowid,
            is_from_me: spec.is_from_me,
            text: spec.text.clone(),
            date,
            service: chat.service.clone(),
            account: account_for(me.as_deref()),
            destination_caller_id: me,
            attachments: spec
                .attachments
                .iter()
                .map(|p| (new_guid(), AttachmentSource::Copy(p.clone())))
                .collect(),
            ..Default::default()
        };
        if let Some((tb, target)) = tapback {
            let t = self.message_by_guid(&target)?.ok_or_else(|| {
                WorldError::NotFound(format!("reaction target message guid {target} not found"))
            })?;
            if m.text.is_empty() {
                m.text = tapback::row_text(tb.code, tb.emoji.as_deref(), &t.text);
            }
            m.associated_message_guid = Some(format!("p:0/{}", t.guid));
            m.associated_message_type = tb.code;
            m.associated_message_emoji = tb.emoji;
        }
        if let Some(target) = &spec.reply_to_guid {
            let t = self.message_by_guid(target)?.ok_or_else(|| {
                WorldError::NotFound(format!("reply_to message guid {target} not found"))
            })?;
            set_reply(&mut m, &t);
        }
        let rowid = self.insert_message(&m)?;
        tx.commit()?;
        self.message(rowid)?
            .ok_or_else(|| WorldError::NotFound(format!("message {rowid} vanished")))
    }

    fn resolve_inject_chat(&self, spec: &InjectSpec) -> Result<ChatRow> {
        if let Some(id) = spec.chat_id {
            return self
                .chat(id)?
                .ok_or_else(|| WorldError::NotFound(format!("unknown chat id {id}")));
        }
        let Some(nc) = &spec.new_chat else {
            return Err(WorldError::Invalid(
                "no chat given: pass a chat id, or ask for a new chat".into(),
            ));
        };
        let service = if nc.service.is_empty() {
            "iMessage"
        } else {
            nc.service.as_str()
        };
        if service != "iMessage" && service != "SMS" {
            return Err(WorldError::Invalid(format!(
                "unknown service {service:?}: expected iMessage or SMS"
            )));
        }
        let from = spec.from.trim();
        let mut participants: Vec<String> = nc
            .participants
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if nc.group {
            if !spec.is_from_me && !participants.iter().any(|p| p == from) {
                participants.push(from.to_string());
            }
            let id = self.insert_chat(
                true,
                service,
                &participants,
                nc.display_name.as_deref(),
                None,
            )?;
            return self
                .chat(id)?
                .ok_or_else(|| WorldError::NotFound(format!("chat {id} vanished")));
        }
        let other = if participants.is_empty() {
            from.to_string()
        } else {
            participants.remove(0)
        };
        if other.is_empty() {
            return Err(WorldError::Invalid(
                "a new direct chat needs the other party's handle".into(),
            ));
        }
        if let Some(c) = self.direct_chat_for_handle(&other, &[service])? {
            return Ok(c);
        }
        let id = self.insert_chat(false, service, &[other], nc.display_name.as_deref(), None)?;
        self.chat(id)?
            .ok_or_else(|| WorldError::NotFound(format!("chat {id} vanished")))
    }

    /// Writes what `send` sends (is_from_me = 1). Text and file give two rows (text first), as
    /// Messages does for an AppleScript send; the first row written is returned.
    pub fn record_send(&self, spec: &OutgoingSpec) -> Result<MessageRow> {
        let tx = self.begin()?;
        let chat = self
            .chat_uncounted(spec.chat_id)?
            .ok_or_else(|| WorldError::NotFound(format!("unknown chat id {}", spec.chat_id)))?;
        let row = self.write_send(&chat, &spec.text, spec.file.as_deref(), &spec.service)?;
        tx.commit()?;
        Ok(row)
    }

    /// `record_send` into a chat the caller already looked up, inside the caller's
    /// transaction (`begin`), so a send costs one transaction and one chat lookup. An empty
    /// `service` means the chat's.
    pub(crate) fn write_send(
        &self,
        chat: &ChatRow,
        text: &str,
        file: Option<&Path>,
        service: &str,
    ) -> Result<MessageRow> {
        if text.is_empty() && file.is_none() {
            return Err(WorldError::Invalid("text or file is required".into()));
        }
        if let Some(f) = file {
            if !f.is_file() {
                return Err(WorldError::NotFound(format!(
                    "attachment file {} does not exist",
                    f.display()
                )));
            }
        }
        let service = if service.is_empty() {
            &chat.service
        } else {
            service
        };
        let me = self.me();
        let handle_rowid = self.outgoing_handle(chat)?;
        let base = NewMessage {
            join_chat: Some(chat.id),
            handle_rowid,
            is_from_me: true,
            date: dates::now_apple_ns(),
            service: service.to_string(),
            account: account_for(me.as_deref()),
            destination_caller_id: me,
            ..Default::default()
        };
        let mut first = None;
        if !text.is_empty() {
            let m = NewMessage {
                guid: new_guid(),
                text: text.to_string(),
                ..base.clone()
            };
            let rowid = self.insert_message(&m)?;
            // The row as `message(rowid)` would read it back, without the read: a text row
            // has no attachments, its only chat is `chat`, and its sender is the handle
            // `outgoing_handle` wrote (the DM's recipient), else the local account.
            let sender = match (handle_rowid, chat.participants.first()) {
                (0, _) | (_, None) => m.destination_caller_id.clone().unwrap_or_default(),
                (_, Some(h)) => h.clone(),
            };
            first = Some(written_row(rowid, m, sender));
        }
        if let Some(f) = file {
            let rowid = self.insert_message(&NewMessage {
                guid: new_guid(),
                attachments: vec![(new_guid(), AttachmentSource::Copy(f.to_path_buf()))],
                ..base
            })?;
            if first.is_none() {
                first =
                    Some(self.message(rowid)?.ok_or_else(|| {
                        WorldError::NotFound(format!("message {rowid} vanished"))
                    })?);
            }
        }
        Ok(first.expect("text or file was written"))
    }

    /// Writes the missing chat_message_join of an unjoined row.
    pub fn join_message(&self, rowid: i64, chat_id: i64) -> Result<()> {
        let tx = self.begin()?;
        let m = self
            .message(rowid)?
            .ok_or_else(|| WorldError::NotFound(format!("unknown message rowid {rowid}")))?;
        if self.chat(chat_id)?.is_none() {
            return Err(WorldError::NotFound(format!("unknown chat id {chat_id}")));
        }
        self.join_rows(rowid, chat_id, m.date)?;
        tx.commit()
    }
}

/// `account` of a row the local account writes: `e:` or `p:` and the account.
fn account_for(me: Option<&str>) -> Option<String> {
    me.map(|m| {
        if m.contains('@') {
            format!("e:{m}")
        } else {
            format!("p:{m}")
        }
    })
}

/// The `MessageRow` of a row without attachments just inserted as `m` into its `join_chat`.
fn written_row(id: i64, m: NewMessage, sender: String) -> MessageRow {
    MessageRow {
        id,
        guid: m.guid,
        chat_id: m.join_chat,
        sender,
        is_from_me: m.is_from_me,
        text: m.text,
        date: m.date,
        is_read: m.is_read,
        date_read: m.date_read,
        service: m.service,
        associated_message_guid: m.associated_message_guid.filter(|s| !s.is_empty()),
        associated_message_type: m.associated_message_type,
        associated_message_emoji: m.associated_message_emoji.filter(|s| !s.is_empty()),
        thread_originator_guid: m.thread_originator_guid.filter(|s| !s.is_empty()),
        thread_originator_part: m.thread_originator_part.filter(|s| !s.is_empty()),
        reply_to_guid: m.reply_to_guid.filter(|s| !s.is_empty()),
        destination_caller_id: m.destination_caller_id.filter(|s| !s.is_empty()),
        balloon_bundle_id: None,
        attachments: Vec::new(),
    }
}

/// Marks `m` as an inline reply to `parent` the way both Messages (thread originator,
/// reply_to_guid) and imsg (reply_to_guid from associated_message_guid) read it.
pub(crate) fn set_reply(m: &mut NewMessage, parent: &MessageRow) {
    m.thread_originator_guid = Some(parent.guid.clone());
    m.thread_originator_part = Some(format!("0:0:{}", parent.text.chars().count()));
    m.reply_to_guid = Some(parent.guid.clone());
    m.associated_message_guid = Some(format!("p:0/{}", parent.guid));
}

fn create_parent(dest: &Path) -> Result<()> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(dir: &Path) -> World {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/worlds/family-group.json5");
        World::build_from_scenario_file(&fixture, &dir.join("chat.db")).unwrap()
    }

    fn send(w: &World, chat_id: i64, text: &str, file: Option<PathBuf>) -> MessageRow {
        w.record_send(&OutgoingSpec {
            chat_id,
            text: text.into(),
            file,
            service: String::new(),
        })
        .unwrap()
    }

    #[test]
    fn a_send_returns_its_row_as_it_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = family(dir.path());
        // A group (handle 0), a DM and an SMS DM; with and without a file after the text.
        let file = dir.path().join("note.txt");
        std::fs::write(&file, "x").unwrap();
        for chat in [1, 2, 3] {
            for f in [None, Some(file.clone())] {
                let row = send(&w, chat, "hi / there", f);
                assert_eq!(Some(&row), w.message(row.id).unwrap().as_ref());
            }
        }
        // A file-only send returns the attachment row, read back.
        let row = send(&w, 2, "", Some(file));
        assert_eq!(row.attachments.len(), 1);
        assert_eq!(Some(&row), w.message(row.id).unwrap().as_ref());
    }

    #[test]
    fn without_a_local_account_a_group_send_has_no_sender() {
        let dir = tempfile::tempdir().unwrap();
        let w = World::build_from_scenario_str(
            r#"{chats: [{group: true, participants: ["+15551110001", "a@b.com"], messages: []}]}"#,
            &dir.path().join("chat.db"),
        )
        .unwrap();
        let row = send(&w, 1, "hello", None);
        assert_eq!(row.sender, "");
        assert_eq!(row.destination_caller_id, None);
        assert_eq!(Some(&row), w.message(row.id).unwrap().as_ref());
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = family(dir.path());
        let before = w.max_rowid().unwrap();
        let missing = dir.path().join("absent.png");
        assert!(w
            .record_send(&OutgoingSpec {
                chat_id: 999,
                text: "x".into(),
                ..Default::default()
            })
            .is_err());
        assert!(w
            .record_send(&OutgoingSpec {
                chat_id: 1,
                text: "x".into(),
                file: Some(missing),
                ..Default::default()
            })
            .is_err());
        assert!(w.conn().is_autocommit(), "no transaction left open");
        assert_eq!(w.max_rowid().unwrap(), before);
        send(&w, 1, "still writes", None);
    }
}
