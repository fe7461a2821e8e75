//! Text recovery from `message.attributedBody` (an NSArchiver typedstream of an
//! NSAttributedString). Newer macOS versions leave `message.text` NULL and keep the text only
//! there; this finds the first NSString payload, which is the message text.

/// The string stored after the first `NSString` class marker, if it can be read.
pub fn text_from_attributed_body(body: &[u8]) -> Option<String> {
    let marker = b"NSString";
    let start = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
    // After the class name come a few bytes of class/object bookkeeping, then `+` (0x2B,
    // "C string follows") and the length.
    let rest = body.get(start..)?;
    let plus = rest.iter().take(16).position(|b| *b == 0x2B)?;
    let mut i = plus + 1;
    let len = match *rest.get(i)? {
        0x81 => {
            let n = u16::from_le_bytes([*rest.get(i + 1)?, *rest.get(i + 2)?]) as usize;
            i += 3;
            n
        }
        0x82 => {
            let n = u32::from_le_bytes([
                *rest.get(i + 1)?,
                *rest.get(i + 2)?,
                *rest.get(i + 3)?,
                *rest.get(i + 4)?,
            ]) as usize;
            i += 5;
            n
        }
        n => {
            i += 1;
            n as usize
        }
    };
    let bytes = rest.get(i..i.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_strings() {
        let mut body = b"\x04\x0bstreamtyped\x81\xe8\x03\x84\x01@\x84\x84\x84\x12NSAttributedString\x00\x84\x84\x08NSObject\x00\x85\x92\x84\x84\x84\x08NSString\x01\x94\x84\x01+".to_vec();
        let mut short = body.clone();
        short.push(5);
        short.extend_from_slice(b"hello\x86");
        assert_eq!(text_from_attributed_body(&short).as_deref(), Some("hello"));
        let long = "x".repeat(300);
        body.push(0x81);
        body.extend_from_slice(&300u16.to_le_bytes());
        body.extend_from_slice(long.as_bytes());
        assert_eq!(text_from_attributed_body(&body), Some(long));
        assert_eq!(text_from_attributed_body(b"garbage"), None);
    }
}
