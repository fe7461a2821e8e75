//! Pairing requests, approvals and the outbox in the state store (DESIGN decision 2, issue
//! "access control"). Per account: at most [`MAX_PENDING`] live requests, each with a code
//! unique in the store, live for one hour from creation; approvals beside the config's
//! `allowFrom` (the config file is never rewritten). The CLI and the running gateway share
//! these tables, so an approval takes effect on the sender's next message. Time is the
//! caller's (`now_ms`), so expiry is tested without waiting.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{classify, JournalStatus, StateError, Store};
use crate::access::pairing::{
    expires_at, is_expired, normalize_code, MAX_CODE_ATTEMPTS, MAX_PENDING, TTL_MS,
};

/// Expired requests are kept this long (so an operator typing an old code hears "expired",
/// not "unknown"), then purged: with at most three new requests an hour, the table stays small.
const KEEP_EXPIRED_MS: i64 = 24 * 60 * 60 * 1000;

/// One pairing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairingRequest {
    pub account: String,
    /// The normalised sender (E.164 or lower-case email).
    pub sender: String,
    pub code: String,
    /// The DM's chat, where the code went.
    pub chat_id: Option<i64>,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub expires_ms: i64,
    /// `pending` or `rejected`.
    pub status: String,
}

/// One approved sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub account: String,
    pub sender: String,
    /// The code that was approved.
    pub code: Option<String>,
    pub chat_id: Option<i64>,
    pub approved_ms: i64,
}

/// What a message from an unknown sender did to the pairing requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upsert {
    /// A new request: its code is sent to the sender, once.
    Created(PairingRequest),
    /// The sender already has a live request: nothing is sent.
    Pending(PairingRequest),
    /// The sender's live request was rejected: nothing is sent until it would have expired.
    Rejected(PairingRequest),
    /// [`MAX_PENDING`] requests are live: no request, nothing sent.
    Full,
    /// The sender was approved while its message was on the way: nothing sent; its next
    /// message is answered.
    Approved,
}

/// Why a pairing command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    #[error("no pairing request has the code {code} (see imsg-gateway pairing list)")]
    Unknown { code: String },
    #[error("the code {code} of {sender} expired at {expired}; the sender's next message gets a new code")]
    Expired {
        code: String,
        sender: String,
        expired: String,
    },
    #[error("the code {code} was already used: {sender} is approved")]
    AlreadyUsed { code: String, sender: String },
    #[error("the code {code} of {sender} was rejected")]
    Rejected { code: String, sender: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A time in ms since the epoch, as the CLI prints it.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

const REQUEST_COLUMNS: &str = "account, sender, code, chat_id, created_ms, last_seen_ms, status";

fn to_request(r: &rusqlite::Row<'_>) -> rusqlite::Result<PairingRequest> {
    let created_ms: i64 = r.get(4)?;
    Ok(PairingRequest {
        account: r.get(0)?,
        sender: r.get(1)?,
        code: r.get(2)?,
        chat_id: r.get(3)?,
        created_ms,
        last_seen_ms: r.get(5)?,
        expires_ms: expires_at(created_ms),
        status: r.get(6)?,
    })
}

fn to_approval(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
    Ok(Approval {
        account: r.get(0)?,
        sender: r.get(1)?,
        code: r.get(2)?,
        chat_id: r.get(3)?,
        approved_ms: r.get(4)?,
    })
}

fn upsert_on(
    tx: &rusqlite::Connection,
    account: &str,
    sender: &str,
    chat_id: Option<i64>,
    now_ms: i64,
    new_code: &mut dyn FnMut() -> String,
) -> rusqlite::Result<Upsert> {
    tx.execute(
        "DELETE FROM pairing WHERE created_ms < ?1",
        [now_ms.saturating_sub(TTL_MS + KEEP_EXPIRED_MS)],
    )?;
    let approved: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM approved WHERE account = ?1 AND sender = ?2)",
        params![account, sender],
        |r| r.get(0),
    )?;
    if approved {
        // Approved after the caller decided (the CLI ran meanwhile): no new code.
        return Ok(Upsert::Approved);
    }
    let existing = tx
        .query_row(
            &format!("SELECT {REQUEST_COLUMNS} FROM pairing WHERE account = ?1 AND sender = ?2"),
            params![account, sender],
            to_request,
        )
        .optional()?;
    if let Some(mut r) = existing {
        if !is_expired(r.created_ms, now_ms) {
            if r.status == "rejected" {
                return Ok(Upsert::Rejected(r));
            }
            tx.execute(
                "UPDATE pairing SET last_seen_ms = ?3, chat_id = COALESCE(?4, chat_id)
                 WHERE account = ?1 AND sender = ?2",
                params![account, sender, now_ms, chat_id],
            )?;
            r.last_seen_ms = now_ms;
            r.chat_id = chat_id.or(r.chat_id);
            return Ok(Upsert::Pending(r));
        }
        tx.execute(
            "DELETE FROM pairing WHERE account = ?1 AND sender = ?2",
            params![account, sender],
        )?;
    }
    let live: i64 = tx.query_row(
        "SELECT count(*) FROM pairing WHERE account = ?1 AND status = 'pending' AND created_ms >= ?2",
        params![account, now_ms.saturating_sub(TTL_MS)],
        |r| r.get(0),
    )?;
    if live as usize >= MAX_PENDING {
        return Ok(Upsert::Full);
    }
    let mut code = None;
    for _ in 0..MAX_CODE_ATTEMPTS {
        let c = new_code();
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM pairing WHERE code = ?1)
                 OR EXISTS(SELECT 1 FROM approved WHERE code = ?1)",
            [&c],
            |r| r.get(0),
        )?;
        if !taken {
            code = Some(c);
            break;
        }
    }
    let code = code.ok_or_else(|| {
        rusqlite::Error::ToSqlConversionFailure("no unused pairing code after 500 attempts".into())
    })?;
    tx.execute(
        "INSERT INTO pairing(account, sender, code, chat_id, created_ms, last_seen_ms, status)
         VALUES(?1, ?2, ?3, ?4, ?5, ?5, 'pending')",
        params![account, sender, code, chat_id, now_ms],
    )?;
    Ok(Upsert::Created(PairingRequest {
        account: account.to_string(),
        sender: sender.to_string(),
        code,
        chat_id,
        created_ms: now_ms,
        last_seen_ms: now_ms,
        expires_ms: expires_at(now_ms),
        status: "pending".into(),
    }))
}

/// What [`Store::pair_inbound`] journals, decided once the pairing outcome is known.
pub struct PairJournal {
    /// The inbound message's journal reason.
    pub reason: String,
    /// The reply to send (the code), as a journal key and a plan of `send` params.
    pub reply: Option<(String, String)>,
}

impl Store {
    /// A message from an unknown sender arrived: creates or refreshes its request.
    pub fn pairing_upsert(
        &mut self,
        account: &str,
        sender: &str,
        chat_id: Option<i64>,
        now_ms: i64,
        new_code: &mut dyn FnMut() -> String,
    ) -> Result<Upsert, StateError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        self.atomically(|s| {
            let tx = &s.conn;
            let out = upsert_on(tx, account, sender, chat_id, now_ms, new_code).map_err(err)?;
            Ok(out)
        })
    }

    /// The pairing flow for one inbound message, in one transaction: the request is upserted,
    /// the message journaled as not answered (with the reason `journal` gives for the
    /// outcome) and, for a new request, the code's reply journaled as `answering` with its
    /// plan, so a crash can neither lose the code nor send it twice. Returns `None` when the
    /// message was journaled already (nothing changes).
    #[allow(clippy::too_many_arguments)]
    pub fn pair_inbound(
        &mut self,
        account: &str,
        guid: &str,
        rowid: i64,
        sender: &str,
        chat_id: Option<i64>,
        now_ms: i64,
        new_code: &mut dyn FnMut() -> String,
        journal: &dyn Fn(&Upsert) -> PairJournal,
    ) -> Result<Option<(Upsert, PairJournal)>, StateError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        self.atomically(|s| {
        let tx = &s.conn;
        let known: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM journal WHERE account = ?1 AND guid = ?2)",
                params![account, guid],
                |r| r.get(0),
            )
            .map_err(err)?;
        if known {
            return Ok(None);
        }
        let outcome = upsert_on(tx, account, sender, chat_id, now_ms, new_code).map_err(err)?;
        let j = journal(&outcome);
        let ts = self.now();
        tx.execute(
            "INSERT INTO journal(account, guid, rowid, chat_id, status, reason, received_at, updated_at)
             VALUES(?1, ?2, ?3, ?4, 'skipped', ?5, ?6, ?6)",
            params![account, guid, rowid, chat_id, j.reason, ts],
        )
        .map_err(err)?;
        if let Some((key, plan)) = &j.reply {
            tx.execute(
                "INSERT INTO journal(account, guid, rowid, chat_id, status, reason, plan, sent, received_at, updated_at)
                 VALUES(?1, ?2, ?3, ?4, 'answering', 'pairing code', ?5, 0, ?6, ?6)
                 ON CONFLICT(account, guid) DO NOTHING",
                params![account, key, rowid, chat_id, plan, ts],
            )
            .map_err(err)?;
        }
        // The cursor is not moved here: the caller moves it past the whole batch in the
        // transaction that journals the rest of it.
                Ok(Some((outcome, j)))
        })
    }

    /// Live pending requests (not expired, not rejected), oldest first.
    pub fn pairing_list(
        &self,
        account: Option<&str>,
        now_ms: i64,
    ) -> Result<Vec<PairingRequest>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM pairing
                 WHERE (?1 IS NULL OR account = ?1) AND status = 'pending' AND created_ms >= ?2
                 ORDER BY created_ms, account, sender"
            ))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![account, now_ms.saturating_sub(TTL_MS)], to_request)
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// The request a code names (case-insensitively), whatever its state.
    fn request_by_code(&self, code: &str) -> Result<Option<PairingRequest>, StateError> {
        self.conn
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM pairing WHERE code = ?1"),
                [code],
                to_request,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Why a code cannot be approved or rejected, or the live request it names.
    fn live_request(&self, typed: &str, now_ms: i64) -> Result<PairingRequest, PairingError> {
        let code = normalize_code(typed);
        match self.request_by_code(&code)? {
            Some(r) if r.status == "rejected" => Err(PairingError::Rejected {
                code,
                sender: r.sender,
            }),
            Some(r) if is_expired(r.created_ms, now_ms) => Err(PairingError::Expired {
                code,
                sender: r.sender,
                expired: iso_ms(r.expires_ms),
            }),
            Some(r) => Ok(r),
            None => {
                let used = self
                    .conn
                    .query_row(
                        "SELECT sender FROM approved WHERE code = ?1",
                        [&code],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()
                    .map_err(|e| self.sql(e))?;
                Err(match used {
                    Some(sender) => PairingError::AlreadyUsed { code, sender },
                    None => PairingError::Unknown { code },
                })
            }
        }
    }

    /// Approves the live request with this code: the sender's DMs are answered from their
    /// next message on.
    pub fn pairing_approve(&mut self, typed: &str, now_ms: i64) -> Result<Approval, PairingError> {
        // The code is looked up and used in one write transaction: nothing (expiry, a
        // concurrent reject, a new request) can come in between.
        let tx = self.write_transaction()?;
        let r = self.live_request(typed, now_ms)?;
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        tx.execute(
            "DELETE FROM pairing WHERE account = ?1 AND sender = ?2 AND code = ?3",
            params![r.account, r.sender, r.code],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO approved(account, sender, code, chat_id, approved_ms) VALUES(?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(account, sender) DO UPDATE SET code = excluded.code,
                 chat_id = excluded.chat_id, approved_ms = excluded.approved_ms",
            params![r.account, r.sender, r.code, r.chat_id, now_ms],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Approval {
            account: r.account,
            sender: r.sender,
            code: Some(r.code),
            chat_id: r.chat_id,
            approved_ms: now_ms,
        })
    }

    /// A write transaction taken at once (`BEGIN IMMEDIATE`), for the CLI's read-then-write
    /// commands: a deferred one could read a request and then lose the race to write it.
    fn write_transaction(&self) -> Result<rusqlite::Transaction<'_>, StateError> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))
    }

    /// Rejects the live request with this code: its sender gets nothing until the request
    /// would have expired; a message after that starts a new request.
    pub fn pairing_reject(
        &mut self,
        typed: &str,
        now_ms: i64,
    ) -> Result<PairingRequest, PairingError> {
        let tx = self.write_transaction()?;
        let mut r = self.live_request(typed, now_ms)?;
        tx.execute(
            "UPDATE pairing SET status = 'rejected' WHERE account = ?1 AND sender = ?2 AND code = ?3",
            params![r.account, r.sender, r.code],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        r.status = "rejected".into();
        Ok(r)
    }

    /// Removes the approvals of a normalised sender (in one account, or all); returns them.
    pub fn pairing_revoke(
        &mut self,
        account: Option<&str>,
        sender: &str,
    ) -> Result<Vec<Approval>, StateError> {
        let gone = self
            .approvals(account)?
            .into_iter()
            .filter(|a| a.sender == sender)
            .collect::<Vec<_>>();
        self.conn
            .execute(
                "DELETE FROM approved WHERE (?1 IS NULL OR account = ?1) AND sender = ?2",
                params![account, sender],
            )
            .map_err(|e| self.sql(e))?;
        Ok(gone)
    }

    /// Approved senders, oldest approval first.
    pub fn approvals(&self, account: Option<&str>) -> Result<Vec<Approval>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT account, sender, code, chat_id, approved_ms FROM approved
                 WHERE (?1 IS NULL OR account = ?1) ORDER BY approved_ms, account, sender",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![account], to_approval)
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// The approved senders of an account, for access decisions.
    pub fn approved_senders(&self, account: &str) -> Result<HashSet<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sender FROM approved WHERE account = ?1")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([account], |r| r.get::<_, String>(0))
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<HashSet<_>>>()
            .map_err(|e| self.sql(e))
    }

    /// Queues a message for the running gateway to send through its imsg (the CLI's
    /// `--notify`); returns the journal key the gateway will record it under.
    pub fn queue_outbox(&self, account: &str, plan: &str) -> Result<String, StateError> {
        let ts = self.now();
        self.conn
            .execute(
                "INSERT INTO outbox(account, params, status, created_at, updated_at)
                 VALUES(?1, ?2, 'queued', ?3, ?3)",
                params![account, plan, ts],
            )
            .map_err(|e| self.sql(e))?;
        Ok(format!("outbox:{}", self.conn.last_insert_rowid()))
    }

    /// Moves an account's queued outbox messages into the journal as replies being sent
    /// (`answering`, with their plan), in one transaction, and returns them as
    /// `(key, plan, chat_id)`. `after_rowid` is the newest row the gateway has seen: a
    /// restart reconciling the send looks for it in the chat's history after that row.
    pub fn claim_outbox(
        &mut self,
        account: &str,
        after_rowid: i64,
    ) -> Result<Vec<(String, String, Option<i64>)>, StateError> {
        let path = self.path.clone();
        let err = |e| classify(&path, e);
        self.atomically(|s| {
        let tx = &s.conn;
        let queued: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, params FROM outbox WHERE account = ?1 AND status = 'queued' ORDER BY id LIMIT 100",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(err)?
        };
        let ts = self.now();
        let mut out = Vec::with_capacity(queued.len());
        for (id, plan) in queued {
            let key = format!("outbox:{id}");
            let chat_id = serde_json::from_str::<serde_json::Value>(&plan)
                .ok()
                .and_then(|v| v.get(0)?.get("chat_id")?.as_i64());
            tx.execute(
                "INSERT INTO journal(account, guid, rowid, chat_id, status, reason, plan, sent, received_at, updated_at)
                 VALUES(?1, ?2, ?3, ?4, ?5, 'sent for the CLI', ?6, 0, ?7, ?7)
                 ON CONFLICT(account, guid) DO NOTHING",
                params![account, key, after_rowid, chat_id, JournalStatus::Answering.as_str(), plan, ts],
            )
            .map_err(err)?;
            // Marked, not deleted: SQLite would hand a deleted max id out again, and the
            // next CLI call would then read this message's journal entry as its own.
            tx.execute("UPDATE outbox SET status = 'claimed' WHERE id = ?1", [id])
                .map_err(err)?;
            out.push((key, plan, chat_id));
        }
        // Bounded: claimed rows go, except the newest, which keeps ids from going back.
        tx.execute(
            "DELETE FROM outbox WHERE status = 'claimed' AND id < (SELECT max(id) FROM outbox)",
            [],
        )
        .map_err(err)?;
                Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::pairing::TTL_MS;

    const T0: i64 = 1_800_000_000_000;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    /// Deterministic codes: CODE0001, CODE0002, ...
    fn codes() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("CODE{n:04}")
        }
    }

    fn created(u: Upsert) -> PairingRequest {
        match u {
            Upsert::Created(r) => r,
            other => panic!("expected a new request, got {other:?}"),
        }
    }

    #[test]
    fn create_then_repeat_keeps_the_code_and_the_expiry() {
        let (_d, mut s) = store();
        let mut gen = codes();
        let r = created(
            s.pairing_upsert("default", "+15550001111", Some(7), T0, &mut gen)
                .unwrap(),
        );
        assert_eq!(r.code, "CODE0001");
        assert_eq!(r.expires_ms, T0 + TTL_MS);
        match s
            .pairing_upsert("default", "+15550001111", Some(7), T0 + 60_000, &mut gen)
            .unwrap()
        {
            Upsert::Pending(p) => {
                assert_eq!(p.code, "CODE0001");
                assert_eq!(p.created_ms, T0, "a repeat does not extend the request");
                assert_eq!(p.last_seen_ms, T0 + 60_000);
            }
            other => panic!("{other:?}"),
        }
        let list = s.pairing_list(None, T0 + 60_000).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].chat_id, Some(7));
    }

    #[test]
    fn at_most_three_pending_per_account() {
        let (_d, mut s) = store();
        let mut gen = codes();
        for (i, who) in ["+1", "+2", "+3"].iter().enumerate() {
            created(
                s.pairing_upsert("default", who, None, T0 + i as i64, &mut gen)
                    .unwrap(),
            );
        }
        assert_eq!(
            s.pairing_upsert("default", "+4", None, T0 + 10, &mut gen)
                .unwrap(),
            Upsert::Full
        );
        let senders: Vec<String> = s
            .pairing_list(Some("default"), T0 + 10)
            .unwrap()
            .into_iter()
            .map(|r| r.sender)
            .collect();
        assert_eq!(senders, ["+1", "+2", "+3"]);
        // Another account has its own three.
        created(
            s.pairing_upsert("work", "+4", None, T0 + 10, &mut gen)
                .unwrap(),
        );
        // Once one expires, a fourth stranger gets a request.
        created(
            s.pairing_upsert("default", "+4", None, T0 + TTL_MS + 1, &mut gen)
                .unwrap(),
        );
    }

    #[test]
    fn expiry_at_exactly_one_hour() {
        let (_d, mut s) = store();
        let mut gen = codes();
        let r = created(
            s.pairing_upsert("default", "+1", None, T0, &mut gen)
                .unwrap(),
        );
        assert_eq!(
            s.pairing_list(None, T0 + TTL_MS).unwrap().len(),
            1,
            "live at exactly 1 h"
        );
        assert!(s.pairing_list(None, T0 + TTL_MS + 1).unwrap().is_empty());
        // An expired code cannot be approved...
        match s.pairing_approve(&r.code, T0 + TTL_MS + 1) {
            Err(PairingError::Expired { sender, .. }) => assert_eq!(sender, "+1"),
            other => panic!("{other:?}"),
        }
        // ...and the next message starts a new request with a new code.
        let again = created(
            s.pairing_upsert("default", "+1", None, T0 + TTL_MS + 1, &mut gen)
                .unwrap(),
        );
        assert_ne!(again.code, r.code);
        assert!(matches!(
            s.pairing_approve(&r.code, T0 + TTL_MS + 2),
            Err(PairingError::Unknown { .. })
        ));
    }

    #[test]
    fn approve_is_case_insensitive_and_once() {
        let (_d, mut s) = store();
        let mut gen = codes();
        created(
            s.pairing_upsert("default", "+1", Some(9), T0, &mut gen)
                .unwrap(),
        );
        assert!(matches!(
            s.pairing_approve("nope", T0),
            Err(PairingError::Unknown { .. })
        ));
        let a = s.pairing_approve(" code0001 ", T0 + 5).unwrap();
        assert_eq!(
            (a.account.as_str(), a.sender.as_str(), a.chat_id),
            ("default", "+1", Some(9))
        );
        assert!(s.approved_senders("default").unwrap().contains("+1"));
        assert!(s.approved_senders("work").unwrap().is_empty());
        assert!(s.pairing_list(None, T0 + 5).unwrap().is_empty());
        assert!(matches!(
            s.pairing_approve("CODE0001", T0 + 6),
            Err(PairingError::AlreadyUsed { .. })
        ));
        assert_eq!(s.approvals(None).unwrap().len(), 1);
    }

    #[test]
    fn reject_silences_the_sender_until_the_request_would_expire() {
        let (_d, mut s) = store();
        let mut gen = codes();
        let r = created(
            s.pairing_upsert("default", "+1", None, T0, &mut gen)
                .unwrap(),
        );
        s.pairing_reject(&r.code, T0 + 1).unwrap();
        assert!(s.pairing_list(None, T0 + 1).unwrap().is_empty());
        assert!(matches!(
            s.pairing_approve(&r.code, T0 + 2),
            Err(PairingError::Rejected { .. })
        ));
        assert!(matches!(
            s.pairing_upsert("default", "+1", None, T0 + 3, &mut gen)
                .unwrap(),
            Upsert::Rejected(_)
        ));
        // A rejected request does not hold one of the three places.
        for who in ["+2", "+3", "+4"] {
            created(
                s.pairing_upsert("default", who, None, T0 + 4, &mut gen)
                    .unwrap(),
            );
        }
        assert!(matches!(
            s.pairing_upsert("default", "+1", None, T0 + TTL_MS, &mut gen)
                .unwrap(),
            Upsert::Rejected(_)
        ));
        created(
            s.pairing_upsert("default", "+1", None, T0 + TTL_MS + 5, &mut gen)
                .unwrap(),
        );
    }

    #[test]
    fn an_approved_sender_never_gets_a_new_code() {
        let (_d, mut s) = store();
        let mut gen = codes();
        created(
            s.pairing_upsert("default", "+1", None, T0, &mut gen)
                .unwrap(),
        );
        s.pairing_approve("CODE0001", T0).unwrap();
        assert_eq!(
            s.pairing_upsert("default", "+1", None, T0 + 1, &mut gen)
                .unwrap(),
            Upsert::Approved
        );
        assert!(s.pairing_list(None, T0 + 1).unwrap().is_empty());
    }

    #[test]
    fn revoke_removes_an_approval() {
        let (_d, mut s) = store();
        let mut gen = codes();
        created(
            s.pairing_upsert("default", "+1", None, T0, &mut gen)
                .unwrap(),
        );
        s.pairing_approve("CODE0001", T0).unwrap();
        assert!(s.pairing_revoke(None, "+2").unwrap().is_empty());
        assert_eq!(s.pairing_revoke(None, "+1").unwrap().len(), 1);
        assert!(s.approved_senders("default").unwrap().is_empty());
    }

    #[test]
    fn a_colliding_code_is_drawn_again() {
        let (_d, mut s) = store();
        let mut same = || "AAAAAAAA".to_string();
        created(
            s.pairing_upsert("default", "+1", None, T0, &mut same)
                .unwrap(),
        );
        let mut seq = ["AAAAAAAA", "AAAAAAAA", "BBBBBBBB"]
            .into_iter()
            .map(String::from);
        let mut next = move || seq.next().unwrap();
        assert_eq!(
            created(
                s.pairing_upsert("default", "+2", None, T0, &mut next)
                    .unwrap()
            )
            .code,
            "BBBBBBBB"
        );
    }

    #[test]
    fn the_outbox_moves_into_the_journal_once() {
        let (_d, mut s) = store();
        let key = s
            .queue_outbox("default", r#"[{"chat_id":7,"text":"hi"}]"#)
            .unwrap();
        let claimed = s.claim_outbox("default", 42).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].0, key);
        assert_eq!(claimed[0].2, Some(7));
        assert!(s.claim_outbox("default", 42).unwrap().is_empty());
        // A later message never gets an earlier one's key, even once the queue is empty.
        let next = s
            .queue_outbox("default", r#"[{"chat_id":7,"text":"again"}]"#)
            .unwrap();
        assert_ne!(next, key);
        assert_eq!(s.claim_outbox("default", 43).unwrap()[0].0, next);
        let e = s.entry("default", &key).unwrap().unwrap();
        assert_eq!(e.status, JournalStatus::Answering);
        assert_eq!(e.rowid, Some(42));
    }
}
