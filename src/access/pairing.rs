//! Pairing's rules as plain data (DESIGN decision 2, reference §4): the code alphabet and
//! length, the 1-hour lifetime, the cap on pending requests, and the texts a stranger and an
//! approved sender receive. The requests themselves live in the state store
//! ([`crate::state::Store::pairing_upsert`] and friends), which takes its time from the
//! caller, so expiry is tested with a controlled clock.

/// Unambiguous on a phone screen: no `0`/`O`, no `1`/`I`.
pub const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
pub const CODE_LEN: usize = 8;
/// A request expires this long after it was created; repeats do not extend it.
pub const TTL_MS: i64 = 60 * 60 * 1000;
/// Pending requests per account; a stranger beyond them gets no code and no request.
pub const MAX_PENDING: usize = 3;
/// Attempts at a code no live request uses before giving up (32^8 codes: never reached).
pub const MAX_CODE_ATTEMPTS: usize = 500;

/// A code from 8 random bytes. 256 is a multiple of 32, so `byte % 32` is uniform.
pub fn code_from_bytes(bytes: [u8; CODE_LEN]) -> String {
    bytes
        .iter()
        .map(|b| CODE_ALPHABET[(*b as usize) % CODE_ALPHABET.len()] as char)
        .collect()
}

/// A fresh code from the operating system's CSPRNG.
pub fn random_code() -> String {
    let mut bytes = [0u8; CODE_LEN];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    code_from_bytes(bytes)
}

/// A code as typed by an operator: trimmed, upper-cased (codes match case-insensitively).
pub fn normalize_code(typed: &str) -> String {
    typed.trim().to_ascii_uppercase()
}

/// Whether a request created at `created_ms` has expired at `now_ms`. It is live for exactly
/// one hour: at `created + 1 h` it still is, a millisecond later it is not.
pub fn is_expired(created_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(created_ms) > TTL_MS
}

/// When a request created at `created_ms` stops being approvable.
pub fn expires_at(created_ms: i64) -> i64 {
    created_ms.saturating_add(TTL_MS)
}

/// Whole minutes until `expires_ms`, rounded up (a request made a moment ago has 60 left),
/// never negative.
pub fn minutes_left(expires_ms: i64, now_ms: i64) -> i64 {
    (expires_ms.saturating_sub(now_ms).max(0) + 59_999) / 60_000
}

/// The one message an unknown sender gets. The two middle lines are the reference's
/// (`Your iMessage sender id:`, `Pairing code:`), so tooling written for it finds them.
pub fn pairing_message(sender_id: &str, code: &str) -> String {
    format!(
        "This assistant only answers people its owner has approved.\n\n\
         Your iMessage sender id: {sender_id}\n\n\
         Pairing code: {code}\n\n\
         The code is valid for one hour. Ask the owner to approve it with:\n\
         imsg-gateway pairing approve {code}"
    )
}

/// The confirmation `pairing approve --notify` sends.
pub fn approval_message() -> String {
    "✅ You are approved: this assistant will answer your messages from now on.".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expiry_is_one_hour_from_creation_inclusive() {
        let t0 = 1_700_000_000_000;
        assert!(!is_expired(t0, t0));
        assert!(!is_expired(t0, t0 + TTL_MS));
        assert!(is_expired(t0, t0 + TTL_MS + 1));
        assert_eq!(expires_at(t0), t0 + 3_600_000);
        assert_eq!(minutes_left(expires_at(t0), t0 + 5), 60);
        assert_eq!(minutes_left(expires_at(t0), t0 + TTL_MS), 0);
        assert_eq!(minutes_left(expires_at(t0), t0 + TTL_MS + 9), 0);
    }

    #[test]
    fn message_names_the_sender_the_code_and_the_command() {
        let m = pairing_message("+15550001111", "ABCD2345");
        assert!(m.contains("Your iMessage sender id: +15550001111"));
        assert!(m.contains("Pairing code: ABCD2345"));
        assert!(m.contains("imsg-gateway pairing approve ABCD2345"));
    }

    #[test]
    fn codes_are_normalised_for_matching() {
        assert_eq!(normalize_code("  abcd2345 "), "ABCD2345");
    }

    #[test]
    fn random_codes_use_the_alphabet() {
        let a = random_code();
        assert_eq!(a.len(), CODE_LEN);
        assert!(a.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_ne!(a, random_code(), "two codes in a row (1 in 10^12)");
    }

    proptest! {
        #[test]
        fn every_code_is_8_symbols_of_the_alphabet(bytes in proptest::array::uniform8(any::<u8>())) {
            let c = code_from_bytes(bytes);
            prop_assert_eq!(c.len(), 8);
            prop_assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
            prop_assert!(!c.contains(['0', 'O', '1', 'I']));
        }
    }
}
