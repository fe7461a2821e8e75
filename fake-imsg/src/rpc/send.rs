//! `send`, `typing` and `read` for both levels: target validation in imsg's order and words
//! (imsg-rpc-v1.md §4.8/§4.10, imsg-rpc.md §7.5-7.7), then the AppleScript path emulated by
//! writing the outgoing row into the world, plus the send faults (outcome unknown, poison,
//! mirror echo).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::world::{ChatRow, InjectSpec, MessageRow, NewChat, World};

use super::errors::{delivery_data, RpcError};
use super::faults::MirrorEcho;
use super::framing::Protocol;
use super::out::encode;
use super::params::{Lenient, Strict};
use super::server::Shared;

type R = Result<Value, RpcError>;

/// Where a send, typing or read goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    To(String),
    ChatId(i64),
    Identifier(String),
    Guid(String),
}

/// What was resolved against the world.
enum Resolved {
    Chat(Box<ChatRow>),
    /// A direct handle (with the services allowed to match an existing chat).
    Direct(String),
}

/// imsg's detail when no outgoing attachment row matched the staged file.
const ATTACHMENT_NOT_OBSERVED: &str = "Messages automation returned success, but no matching outgoing attachment row was observed within 8 seconds.";

const SIP_TEXT: &str = "System Integrity Protection (SIP) is enabled. Refusing to inject into Messages.app. Disable SIP in Recovery mode before using `imsg launch`.";

fn wrap(e: crate::world::WorldError) -> RpcError {
    RpcError::internal(e.to_string())
}

/// v1 target selectors (same rules for send, typing, read).
fn target_v1(p: &Strict) -> Result<Target, RpcError> {
    let has_to = p.has(&["to"]);
    let selectors = ["chat_id", "chat_identifier", "chat_guid"]
        .iter()
        .filter(|k| p.has(&[k]))
        .count();
    if has_to && selectors > 0 {
        return Err(RpcError::invalid_params(
            "use to or exactly one chat selector; not both",
        ));
    }
    if has_to {
        let to = p.string(&["to"])?.unwrap_or_default();
        if to.trim().is_empty() {
            return Err(RpcError::invalid_params("to must be a non-empty string"));
        }
        return Ok(Target::To(to));
    }
    if selectors != 1 {
        return Err(RpcError::invalid_params(
            "exactly one of chat_id, chat_identifier, or chat_guid is required",
        ));
    }
    if let Some(id) = p.positive(&["chat_id"])? {
        return Ok(Target::ChatId(id));
    }
    for (k, make) in [
        (
            "chat_identifier",
            Target::Identifier as fn(String) -> Target,
        ),
        ("chat_guid", Target::Guid as fn(String) -> Target),
    ] {
        if let Some(s) = p.string(&[k])? {
            if s.trim().is_empty() {
                return Err(RpcError::invalid_params(format!(
                    "{k} must be a non-empty string"
                )));
            }
            return Ok(make(s));
        }
    }
    unreachable!("exactly one selector is present")
}

/// Whether a string looks like a phone number or email (a buddy handle).
fn is_handle(s: &str) -> bool {
    s.contains('@')
        || (s.chars().any(|c| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_digit() || "+-(). ".contains(c)))
}

/// E.164-ish normalisation of a direct phone number (US region rules for 10/11 digits).
pub fn normalize_handle(to: &str, region: &str) -> String {
    let t = to.trim();
    if t.contains('@') || !is_handle(t) {
        return t.to_string();
    }
    let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    if t.starts_with('+') {
        return format!("+{digits}");
    }
    match (region.to_ascii_uppercase().as_str(), digits.len()) {
        ("US" | "CA", 10) => format!("+1{digits}"),
        ("US" | "CA", 11) if digits.starts_with('1') => format!("+{digits}"),
        _ => digits,
    }
}

fn services_for(service: &str) -> Vec<&'static str> {
    match service {
        "sms" => vec!["SMS"],
        "imessage" => vec!["iMessage"],
        _ => vec!["iMessage", "SMS"],
    }
}

/// Resolves a target against the world (`None` world = database down).
fn resolve(w: &World, target: &Target) -> Result<Option<Resolved>, RpcError> {
    Ok(match target {
        Target::To(h) => Some(Resolved::Direct(h.clone())),
        Target::ChatId(id) => Some(Resolved::Chat(Box::new(
            w.chat_for_send(*id)
                .map_err(wrap)?
                .ok_or_else(|| RpcError::invalid_params(format!("unknown chat_id {id}")))?,
        ))),
        Target::Identifier(s) => match w.chat_by_identifier(s).map_err(wrap)? {
            Some(c) => Some(Resolved::Chat(Box::new(c))),
            None if is_handle(s) => Some(Resolved::Direct(s.clone())),
            None => None,
        },
        Target::Guid(g) => match w.chat_by_guid(g).map_err(wrap)? {
            Some(c) => Some(Resolved::Chat(Box::new(c))),
            None => match g.split_once(";-;") {
                Some((_, h)) if is_handle(h) => Some(Resolved::Direct(h.to_string())),
                _ => None,
            },
        },
    })
}

fn applescript_unknown(target: &Target) -> RpcError {
    let s = match target {
        Target::Identifier(s) | Target::Guid(s) | Target::To(s) => s.clone(),
        Target::ChatId(n) => n.to_string(),
    };
    RpcError::internal(format!(
        "AppleScript failed: Can\u{2019}t get chat id \"{s}\". (-1728)"
    ))
}

/// Parsed common send parameters.
struct SendReq {
    target: Target,
    text: String,
    file: Option<PathBuf>,
    service: String,
    region: String,
}

/// `send` (v1); the result comes encoded (`out::encode`).
pub fn send_v1(sh: &Shared, params: &Map<String, Value>) -> Result<String, RpcError> {
    const FMT: &[&str] = &["text_formatting", "textFormatting", "formatting"];
    const REPLY: &[&str] = &["reply_to", "replyTo", "reply_to_guid", "message_guid"];
    const SMSFB: &[&str] = &["allow_sms_fallback", "allowSMSFallback"];
    let p = Strict::new(
        "send",
        params,
        &[
            &["to"],
            &["chat_id"],
            &["chat_identifier"],
            &["chat_guid"],
            &["text"],
            &["file"],
            &["service"],
            &["region"],
            &["transport"],
            FMT,
            REPLY,
            SMSFB,
            &["attempt_id"],
        ],
    )?;
    let text = p.string(&["text"])?.unwrap_or_default();
    let file = p.string(&["file"])?.unwrap_or_default();
    if p.has(&["attempt_id"]) {
        return Err(RpcError::invalid_params(
            "attempt_id is only supported by send.tracked",
        ));
    }
    p.objects(FMT)?;
    let service = p.string(&["service"])?.unwrap_or_else(|| "auto".into());
    if !matches!(service.as_str(), "auto" | "imessage" | "sms") {
        return Err(RpcError::invalid_params("invalid service"));
    }
    let transport = p
        .string(&["transport"])?
        .unwrap_or_else(|| "auto".into())
        .to_ascii_lowercase();
    if !matches!(transport.as_str(), "auto" | "bridge" | "applescript") {
        return Err(RpcError::invalid_params("invalid transport"));
    }
    let region = p.string(&["region"])?.unwrap_or_else(|| "US".into());
    p.bool(SMSFB)?;
    let reply_to = p.string(REPLY)?;
    let target = target_v1(&p)?;
    if text.is_empty() && file.is_empty() {
        return Err(RpcError::invalid_params("text or file is required"));
    }
    if let Target::To(name) = &target {
        // A contact name needs Contacts, which this emulated Mac reports unavailable.
        if !is_handle(name.trim()) {
            return Err(RpcError::invalid_params(format!(
                "Invalid chat target: Contacts access is unavailable, so \"{name}\" cannot be resolved. Specify a phone number or email instead."
            )));
        }
    }
    // imsg opens the database and resolves a chat_id before the transport rules and before
    // staging the file, so those refusals come after -32002 / `unknown chat_id`. A text-only
    // send reaches the same lookup in `perform` without this extra query.
    if let Target::ChatId(id) = target {
        if transport == "bridge" || reply_to.is_some() || !file.is_empty() {
            sh.db.run(|w| {
                w.chat_for_send(id)
                    .map_err(wrap)?
                    .map(|_| ())
                    .ok_or_else(|| RpcError::invalid_params(format!("unknown chat_id {id}")))
            })?;
        }
    }
    if transport == "bridge" {
        require_bridge_chat(sh, &target, &service)?;
        return Err(RpcError::not_started(
            "bridge_v2",
            "send",
            super::errors::BRIDGE_NOT_STARTED,
        ));
    }
    if reply_to.is_some() {
        return Err(RpcError::invalid_params(
            "reply_to requires bridge transport; AppleScript fallback cannot send threaded replies",
        ));
    }
    let req = SendReq {
        target,
        text,
        file: (!file.is_empty()).then(|| super::db::expand_path(&file)),
        service,
        region,
    };
    perform(sh, req)
}

/// `send` (legacy, lenient; imsg-rpc.md §7.5 order); the result comes encoded.
pub fn send_legacy(sh: &Shared, params: &Map<String, Value>) -> Result<String, RpcError> {
    let p = Lenient { map: params };
    let service = p.string(&["service"]).unwrap_or_else(|| "auto".into());
    if !matches!(service.as_str(), "auto" | "imessage" | "sms") {
        return Err(RpcError::invalid_params("invalid service"));
    }
    let transport = p
        .string(&["transport"])
        .unwrap_or_else(|| "auto".into())
        .to_ascii_lowercase();
    if !matches!(transport.as_str(), "auto" | "bridge" | "applescript") {
        return Err(RpcError::invalid_params("invalid transport"));
    }
    let target = target_legacy(&p, "to is required for direct sends")?;
    let text = p.string(&["text"]).unwrap_or_default();
    let file = p.string(&["file"]).unwrap_or_default();
    if text.is_empty() && file.is_empty() {
        return Err(RpcError::invalid_params("text or file is required"));
    }
    check_chat_legacy(sh, &target)?;
    if transport == "bridge" {
        require_bridge_chat(sh, &target, &service)?;
        return Err(RpcError::internal(SIP_TEXT));
    }
    let req = SendReq {
        target,
        text,
        file: (!file.is_empty()).then(|| super::db::expand_path(&file)),
        service,
        region: p.string(&["region"]).unwrap_or_else(|| "US".into()),
    };
    perform(sh, req)
}

/// Legacy targets: a non-empty `to`, or any coercible chat selector.
fn target_legacy(p: &Lenient, missing: &str) -> Result<Target, RpcError> {
    let to = p.string(&["to"]).unwrap_or_default();
    let chat_id = p.int(&["chat_id"]);
    let ident = p.string(&["chat_identifier"]).unwrap_or_default();
    let guid = p.string(&["chat_guid"]).unwrap_or_default();
    let has_chat = chat_id.is_some() || !ident.is_empty() || !guid.is_empty();
    if !to.is_empty() && has_chat {
        return Err(RpcError::invalid_params("use to or chat_*; not both"));
    }
    if to.is_empty() && !has_chat {
        return Err(RpcError::invalid_params(missing));
    }
    Ok(if let Some(id) = chat_id {
        Target::ChatId(id)
    } else if !guid.is_empty() {
        Target::Guid(guid)
    } else if !ident.is_empty() {
        Target::Identifier(ident)
    } else {
        Target::To(to)
    })
}

/// Legacy chat_id lookup errors (`unknown chat_id`, `missing chat identifier or guid`).
fn check_chat_legacy(sh: &Shared, target: &Target) -> Result<(), RpcError> {
    if let Target::ChatId(id) = target {
        let chat = sh
            .db
            .run(|w| w.chat(*id).map_err(wrap))?
            .ok_or_else(|| RpcError::invalid_params(format!("unknown chat_id {id}")))?;
        if chat.guid.is_empty() && chat.identifier.is_empty() {
            return Err(RpcError::invalid_params("missing chat identifier or guid"));
        }
    }
    Ok(())
}

/// The AppleScript path: write the outgoing row(s) and answer (the result comes encoded).
fn perform(sh: &Shared, req: SendReq) -> Result<String, RpcError> {
    if let Some(f) = &req.file {
        if !f.is_file() {
            let detail = format!("Attachment not found at {}", f.display());
            return Err(match sh.protocol {
                Protocol::V1 => RpcError::not_started("applescript", "send", &detail),
                Protocol::Legacy => RpcError::internal(format!("AppleScript failed: {detail}")),
            });
        }
    }
    let outcome = sh.write(|w| -> Result<(MessageRow, ChatRow), RpcError> {
        // The lookup and the rows it leads to are one transaction: one lock round on the
        // file, and the chat cannot change between the two.
        let tx = w.begin().map_err(wrap)?;
        let resolved = resolve(w, &req.target)?.ok_or_else(|| applescript_unknown(&req.target))?;
        let chat = match resolved {
            Resolved::Chat(c) => *c,
            Resolved::Direct(h) => {
                let h = normalize_handle(&h, &req.region);
                match w
                    .direct_chat_for_handle(&h, &services_for(&req.service))
                    .map_err(wrap)?
                {
                    Some(c) => c,
                    None => {
                        // `inject` writes in a transaction of its own.
                        drop(tx);
                        return first_direct_send(w, &req, h);
                    }
                }
            }
        };
        let row = w
            .write_send(&chat, &req.text, req.file.as_deref(), &chat.service)
            .map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok((row, chat))
    });
    let (row, chat) = match outcome {
        Ok(r) => r?,
        Err(d) => {
            // Database down: chat_id sends need it; direct and named chat sends go through
            // unverified.
            if let Target::ChatId(_) = req.target {
                return Err(sh.db.error(d));
            }
            return Ok(encode(&SendResult::UNVERIFIED));
        }
    };
    let n = sh.sends.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(mode) = sh.faults.mirror_echo {
        mirror(sh, &chat, &row, mode);
    }
    if sh.faults.send_poison_on == Some(n) && sh.protocol == Protocol::V1 {
        let data = delivery_data(
            "still_in_flight",
            "applescript",
            "send",
            "Messages accepted the send but it is still in flight.",
        );
        *sh.poison.lock().unwrap_or_else(|e| e.into_inner()) = Some(data.clone());
        return Err(RpcError::new(-32001, "Delivery outcome unknown", data));
    }
    if sh.faults.send_outcome_unknown_on == Some(n) || sh.faults.send_poison_on == Some(n) {
        let detail = "Messages did not write a matching outgoing row within 8 seconds.";
        return Err(match sh.protocol {
            Protocol::V1 => RpcError::outcome_unknown("may_have_completed", "send", detail),
            Protocol::Legacy => RpcError::internal(format!("AppleScript failed: {detail}")),
        });
    }
    // v1 imsg verifies a file-only send by looking for an outgoing row whose attachment has
    // the path it staged; Messages keeps its own copy under another path (as the world does),
    // so the row is never found and the send ends "may have completed" after 8 s (imsg-rpc-v1.md
    // §4.8). 0.9 never verifies file-only sends (imsg-rpc.md §7.5) and answers a bare success.
    if req.text.is_empty() && sh.protocol == Protocol::V1 {
        return Err(RpcError::outcome_unknown(
            "may_have_completed",
            "send",
            ATTACHMENT_NOT_OBSERVED,
        ));
    }
    let verified = !req.text.is_empty();
    let v1 = sh.protocol == Protocol::V1;
    let guid = (verified && !row.guid.is_empty()).then_some(row.guid.as_str());
    Ok(encode(&SendResult {
        chat_guid: (v1 && !chat.guid.is_empty()).then_some(chat.guid.as_str()),
        guid,
        id: verified.then_some(row.id),
        message_id: guid.filter(|_| v1),
        service: (v1 && !chat.service.is_empty()).then_some(chat.service.as_str()),
        ..SendResult::UNVERIFIED
    }))
}

/// A send's result, encoded as the object of its present members would be, without building
/// that object: the fields are in the sorted order serde_json's map writes keys in (a test
/// holds the two encodings equal).
#[derive(Debug, Serialize)]
struct SendResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_guid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    transport: &'static str,
}

impl SendResult<'_> {
    /// `{"ok":true,"transport":"applescript"}`: sent, but nothing verified or known.
    const UNVERIFIED: SendResult<'static> = SendResult {
        chat_guid: None,
        guid: None,
        id: None,
        message_id: None,
        ok: true,
        service: None,
        transport: "applescript",
    };
}

/// First message to a handle without a direct chat: Messages creates the DM chat.
fn first_direct_send(
    w: &World,
    req: &SendReq,
    h: String,
) -> Result<(MessageRow, ChatRow), RpcError> {
    let row = w
        .inject(&InjectSpec {
            chat_id: None,
            new_chat: Some(NewChat {
                group: false,
                display_name: None,
                participants: vec![h.clone()],
                service: if req.service == "sms" {
                    "SMS"
                } else {
                    "iMessage"
                }
                .to_string(),
            }),
            from: h,
            text: req.text.clone(),
            attachments: req.file.iter().cloned().collect(),
            reaction: None,
            reply_to_guid: None,
            is_from_me: true,
            date: None,
            unjoined: false,
        })
        .map_err(wrap)?;
    let chat = row
        .chat_id
        .and_then(|id| w.chat(id).ok().flatten())
        .ok_or_else(|| RpcError::internal("new direct chat not found"))?;
    Ok((row, chat))
}

/// The `mirror_echo` fault: an inbound row that echoes what was just sent.
fn mirror(sh: &Shared, chat: &ChatRow, sent: &MessageRow, mode: MirrorEcho) {
    let from = chat
        .participants
        .first()
        .cloned()
        .unwrap_or_else(|| sent.sender.clone());
    let (text, reply) = match mode {
        MirrorEcho::Text => (sent.text.clone(), None),
        MirrorEcho::ReplyTo => ("\u{FFFC}".to_string(), Some(sent.guid.clone())),
    };
    let r = sh.write(|w| {
        w.inject(&InjectSpec {
            chat_id: Some(chat.id),
            new_chat: None,
            from,
            text,
            attachments: Vec::new(),
            reaction: None,
            reply_to_guid: reply,
            is_from_me: false,
            date: None,
            unjoined: false,
        })
    });
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("mirror_echo failed: {e}"),
        Err(d) => tracing::warn!("mirror_echo failed: database {d:?}"),
    }
}

/// `typing` / `read` (both levels).
pub fn typing_or_read(sh: &Shared, method: &str, params: &Map<String, Value>) -> R {
    let typing = method == "typing";
    let (target, service) = match sh.protocol {
        Protocol::V1 => {
            let mut keys: Vec<&[&str]> =
                vec![&["to"], &["chat_id"], &["chat_identifier"], &["chat_guid"]];
            if typing {
                keys.extend([&["typing"][..], &["service"][..]]);
            }
            let p = Strict::new(method, params, &keys)?;
            if typing {
                p.bool(&["typing"])?;
            }
            let service = if typing {
                p.string(&["service"])?
            } else {
                None
            };
            (target_v1(&p)?, service)
        }
        Protocol::Legacy => {
            let p = Lenient { map: params };
            (
                target_legacy(&p, "to is required")?,
                if typing { p.string(&["service"]) } else { None },
            )
        }
    };
    if let (Target::To(_), Some(s)) = (&target, &service) {
        if !matches!(s.to_ascii_lowercase().as_str(), "imessage" | "sms" | "auto") {
            return Err(RpcError::invalid_params(s.clone()));
        }
    }
    match sh.protocol {
        Protocol::Legacy => check_chat_legacy(sh, &target)?,
        Protocol::V1 => {
            if let Target::ChatId(id) = target {
                sh.db.run(|w| {
                    w.chat(id)
                        .map_err(wrap)?
                        .ok_or_else(|| RpcError::invalid_params(format!("unknown chat_id {id}")))
                })?;
            }
        }
    }
    Ok(json!({"ok": true}))
}

/// Legacy bridge-backed methods: validation, then the stock-macOS SIP failure.
pub fn legacy_bridge(sh: &Shared, method: &str, params: &Map<String, Value>) -> R {
    let p = Lenient { map: params };
    if method == "chats.create" {
        if p.strings(&["addresses"]).is_empty() {
            return Err(RpcError::invalid_params(
                "addresses is required (non-empty array of phone/email)",
            ));
        }
        return Err(RpcError::internal(SIP_TEXT));
    }
    let chat_id = p.int(&["chat_id"]);
    let ident = p.string(&["chat_identifier"]).unwrap_or_default();
    let guid = p.string(&["chat_guid"]).unwrap_or_default();
    if chat_id.is_none() && ident.is_empty() && guid.is_empty() {
        return Err(RpcError::invalid_params(
            "chat_guid, chat_identifier, or chat_id is required",
        ));
    }
    if let Some(id) = chat_id {
        let chat = sh
            .db
            .run(|w| w.chat(id).map_err(wrap))?
            .ok_or_else(|| RpcError::invalid_params(format!("unknown chat_id {id}")))?;
        if chat.guid.is_empty() && chat.identifier.is_empty() {
            return Err(RpcError::invalid_params(
                "could not resolve chat GUID for chat target",
            ));
        }
    }
    let needs_message = matches!(
        method,
        "tapback" | "message.edit" | "message.unsend" | "message.delete" | "message.notifyAnyways"
    );
    if needs_message {
        let m = p
            .string(&[
                "message_id",
                "messageId",
                "message_guid",
                "messageGuid",
                "message",
            ])
            .unwrap_or_default();
        if m.trim().is_empty() {
            return Err(RpcError::invalid_params(
                "message_id or message_guid is required",
            ));
        }
    }
    match method {
        "tapback" => {
            let raw = p
                .string(&["reaction", "kind", "emoji"])
                .ok_or_else(|| RpcError::invalid_params("reaction, kind, or emoji is required"))?;
            if normalize_tapback(&raw).is_none() {
                return Err(RpcError::invalid_params(format!(
                    "unsupported tapback reaction {raw}; use love, like, dislike, laugh, emphasize, or question"
                )));
            }
        }
        "message.edit" => {
            let t = p
                .string(&["text", "new_text", "newText", "edited_message"])
                .unwrap_or_default();
            if t.is_empty() {
                return Err(RpcError::invalid_params("text is required"));
            }
        }
        "send.attachment" if p.string(&["file", "path"]).unwrap_or_default().is_empty() => {
            return Err(RpcError::invalid_params("file is required"));
        }
        "group.rename" if p.string(&["name"]).is_none() => {
            return Err(RpcError::invalid_params("name is required"));
        }
        "group.addParticipant" | "group.removeParticipant"
            if p.string(&["address"]).unwrap_or_default().trim().is_empty() =>
        {
            return Err(RpcError::invalid_params("address is required"));
        }
        _ => {}
    }
    Err(RpcError::internal(SIP_TEXT))
}

/// Tapback names imsg accepts (write side), normalised; `None` if unsupported.
fn normalize_tapback(raw: &str) -> Option<String> {
    let v = raw.trim().to_lowercase();
    let (remove, v) = match v.strip_prefix("remove-") {
        Some(rest) => (true, rest.to_string()),
        None => (false, v),
    };
    let name = match v.as_str() {
        "love" | "heart" | "❤️" | "❤" => "love",
        "like" | "thumbsup" | "thumbs-up" | "+1" | "👍" => "like",
        "dislike" | "thumbsdown" | "thumbs-down" | "-1" | "👎" => "dislike",
        "laugh" | "haha" | "lol" | "😂" | "🤣" => "laugh",
        "emphasize" | "emphasis" | "!!" | "‼" | "‼️" => "emphasize",
        "question" | "?" | "❓" => "question",
        _ => return None,
    };
    Some(if remove {
        format!("remove-{name}")
    } else {
        name.to_string()
    })
}

/// `transport: "bridge"` needs a chat the bridge could address: any chat selector, or an
/// existing direct chat for `to` (both levels refuse alike before the bridge is tried).
fn require_bridge_chat(sh: &Shared, target: &Target, service: &str) -> Result<(), RpcError> {
    let has_chat = match target {
        Target::To(h) => sh
            .db
            .with(|w| {
                w.direct_chat_for_handle(h, &services_for(service))
                    .ok()
                    .flatten()
                    .is_some()
            })
            .unwrap_or(false),
        _ => true,
    };
    if has_chat {
        Ok(())
    } else {
        Err(RpcError::invalid_params(
            "bridge transport requires an existing chat target",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles() {
        assert_eq!(normalize_handle("(415) 555-1212", "US"), "+14155551212");
        assert_eq!(normalize_handle("+44 20 7946 0958", "US"), "+442079460958");
        assert_eq!(normalize_handle("a@b.com", "US"), "a@b.com");
        assert_eq!(normalize_handle("Alice", "US"), "Alice");
        assert_eq!(
            normalize_tapback("remove-heart").as_deref(),
            Some("remove-love")
        );
        assert!(normalize_tapback("wow").is_none());
    }

    #[test]
    fn a_send_result_encodes_as_the_object_of_its_members() {
        let full = SendResult {
            chat_guid: Some("iMessage;+;chat1/2"),
            guid: Some("G/1"),
            id: Some(7),
            message_id: Some("G/1"),
            service: Some("SMS"),
            ..SendResult::UNVERIFIED
        };
        let object = |r: &SendResult| {
            let mut v = json!({"ok": r.ok, "transport": r.transport});
            for (k, m) in [
                ("chat_guid", r.chat_guid),
                ("guid", r.guid),
                ("message_id", r.message_id),
                ("service", r.service),
            ] {
                if let Some(m) = m {
                    v[k] = json!(m);
                }
            }
            if let Some(id) = r.id {
                v["id"] = json!(id);
            }
            encode(&v)
        };
        for r in [
            full,
            SendResult::UNVERIFIED,
            SendResult {
                chat_guid: Some("SMS;-;+1555"),
                id: Some(1),
                ..SendResult::UNVERIFIED
            },
        ] {
            assert_eq!(encode(&r), object(&r), "{r:?}");
        }
    }
}
