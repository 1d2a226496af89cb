//! Byte formats of the outbox: the record a durable entry is stored as (key: its seq, u64
//! big-endian, so sled's order is seq order), and the `"seq"` member added to a frame's JSON
//! text when it is written in acked mode (frames are stored without it, so that a v1 platform
//! gets exactly the v1 text).
//!
//! Record: `[version = 1][class][born_ms: u64 BE][frame JSON text, UTF-8]`.

use std::fmt::Write as _;

use thiserror::Error;

use super::ledger::Class;

const RECORD_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 1 + 8;

/// Why a stored record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum RecordError {
    #[error("outbox record key is not a u64 sequence number ({0} bytes)")]
    BadKey(usize),
    #[error("outbox record of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("outbox record version {0} is not one this build reads")]
    UnknownVersion(u8),
    #[error("outbox record class {0} is unknown")]
    UnknownClass(u8),
    #[error("outbox record text is not UTF-8")]
    NotText,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub seq: u64,
    pub class: Class,
    pub born_ms: u64,
    pub text: String,
}

fn class_byte(class: Class) -> u8 {
    match class {
        Class::Event => 1,
        Class::Result => 2,
        Class::Data => 3,
        Class::Reply => 4,
        Class::Marker => 5,
        Class::Snapshot => 6,
    }
}

fn byte_class(byte: u8) -> Result<Class, RecordError> {
    Ok(match byte {
        1 => Class::Event,
        2 => Class::Result,
        3 => Class::Data,
        4 => Class::Reply,
        5 => Class::Marker,
        6 => Class::Snapshot,
        other => return Err(RecordError::UnknownClass(other)),
    })
}

pub(crate) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn encode(class: Class, born_ms: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + text.len());
    out.push(RECORD_VERSION);
    out.push(class_byte(class));
    out.extend_from_slice(&born_ms.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<Record, RecordError> {
    let seq = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| RecordError::BadKey(key.len()))?;
    if value.len() < HEADER_BYTES {
        return Err(RecordError::Truncated(value.len()));
    }
    if value[0] != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(value[0]));
    }
    let class = byte_class(value[1])?;
    let mut born = [0u8; 8];
    born.copy_from_slice(&value[2..HEADER_BYTES]);
    let text = std::str::from_utf8(&value[HEADER_BYTES..])
        .map_err(|_| RecordError::NotText)?
        .to_owned();
    Ok(Record {
        seq,
        class,
        born_ms: u64::from_be_bytes(born),
        text,
    })
}

/// `text` (one JSON object, as our frames serialize) with `"seq": seq` as its first member.
/// Anything that is not an object is returned unchanged: the gateway never builds one.
pub(crate) fn with_seq(text: &str, seq: u64) -> String {
    let Some(rest) = text.strip_prefix('{') else {
        return text.to_owned();
    };
    let rest = rest.trim_start();
    let mut out = String::with_capacity(text.len() + 28);
    out.push_str("{\"seq\":");
    // Into `out` directly: no second allocation per frame for the number.
    let _ = write!(out, "{seq}");
    if !rest.starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for class in [
            Class::Event,
            Class::Result,
            Class::Data,
            Class::Reply,
            Class::Marker,
            Class::Snapshot,
        ] {
            let value = encode(class, 1_795_615_200_000, r#"{"type":"x","é":1}"#);
            let record = decode(&key(42), &value).unwrap();
            assert_eq!(
                record,
                Record {
                    seq: 42,
                    class,
                    born_ms: 1_795_615_200_000,
                    text: r#"{"type":"x","é":1}"#.into()
                }
            );
        }
    }

    #[test]
    fn bad_records_are_typed_errors_not_panics() {
        assert_eq!(
            decode(&[1, 2], &encode(Class::Event, 0, "{}")),
            Err(RecordError::BadKey(2))
        );
        assert_eq!(decode(&key(1), &[1, 1]), Err(RecordError::Truncated(2)));
        let mut v = encode(Class::Event, 0, "{}");
        v[0] = 9;
        assert_eq!(decode(&key(1), &v), Err(RecordError::UnknownVersion(9)));
        let mut v = encode(Class::Event, 0, "{}");
        v[1] = 77;
        assert_eq!(decode(&key(1), &v), Err(RecordError::UnknownClass(77)));
        let mut v = encode(Class::Event, 0, "");
        v.push(0xff);
        assert_eq!(decode(&key(1), &v), Err(RecordError::NotText));
    }

    #[test]
    fn seq_becomes_the_first_member_and_the_rest_is_untouched() {
        let framed = with_seq(r#"{"type":"data","ep":"n"}"#, 7);
        assert_eq!(framed, r#"{"seq":7,"type":"data","ep":"n"}"#);
        let v: serde_json::Value = serde_json::from_str(&framed).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(
            with_seq("{}", u64::MAX),
            format!("{{\"seq\":{}}}", u64::MAX)
        );
        assert_eq!(with_seq("[1]", 3), "[1]");
    }
}
