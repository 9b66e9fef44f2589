//! The AWS event-stream message encoding used by SubscribeToShard. Pure codec.
//!
//! | part | layout |
//! |---|---|
//! | prelude | total length u32 BE, headers length u32 BE, CRC-32 of those 8 bytes u32 BE |
//! | headers | name length u8, name, value type u8 (7 = string), value length u16 BE, value |
//! | payload | bytes |
//! | trailer | CRC-32 (IEEE) of everything before it, u32 BE |

/// An `:message-type=event` message.
pub fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Vec<u8> {
    message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

/// An `:message-type=exception` message carrying a modelled error.
pub fn exception(exception_type: &str, content_type: &str, payload: &[u8]) -> Vec<u8> {
    message(
        &[
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", content_type),
        ],
        payload,
    )
}

/// Encodes one message with string headers.
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `(name, value)` string headers.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Bytes the message took.
    pub len: usize,
}

/// Decodes one message from the start of `bytes`; for tests and tools.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let total = u32_at(0)? as usize;
    let headers_len = u32_at(4)? as usize;
    let msg = bytes.get(..total)?;
    if total < 16
        || u32_at(8)? != crc32fast::hash(&msg[..8])
        || u32_at(total - 4)? != crc32fast::hash(&msg[..total - 4])
    {
        return None;
    }
    let mut headers = Vec::new();
    let mut h = msg.get(12..12 + headers_len)?;
    while !h.is_empty() {
        let n = usize::from(*h.first()?);
        let name = String::from_utf8(h.get(1..1 + n)?.to_vec()).ok()?;
        if *h.get(1 + n)? != 7 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes(h.get(2 + n..4 + n)?.try_into().ok()?));
        let value = String::from_utf8(h.get(4 + n..4 + n + len)?.to_vec()).ok()?;
        headers.push((name, value));
        h = &h[4 + n + len..];
    }
    let payload = msg.get(12 + headers_len..total - 4)?.to_vec();
    Some(Message {
        headers,
        payload,
        len: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_carry_valid_crcs() {
        let m = event(
            "SubscribeToShardEvent",
            "application/json",
            b"{\"Records\":[]}",
        );
        let msg = decode(&m).unwrap();
        assert_eq!(msg.len, m.len());
        assert_eq!(msg.payload, b"{\"Records\":[]}");
        assert!(
            msg.headers
                .contains(&(":event-type".into(), "SubscribeToShardEvent".into()))
        );
        let mut bad = m.clone();
        bad[20] ^= 1;
        assert!(decode(&bad).is_none());
    }
}
