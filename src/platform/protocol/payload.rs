//! The payload rule of protocol v1: a CoAP payload travels as `utf8` text when its bytes are
//! valid UTF-8, else as standard padded `base64`; a command's payload is decoded back by its
//! `payload_encoding`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How a `payload` string is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    Utf8,
    Base64,
}

/// A CoAP payload as the protocol carries it: the text plus how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedPayload {
    pub payload: String,
    pub payload_encoding: PayloadEncoding,
}

/// `utf8` when the bytes are valid UTF-8, else standard padded base64 (the contract's rule).
pub fn encode_payload(bytes: &[u8]) -> EncodedPayload {
    match std::str::from_utf8(bytes) {
        Ok(text) => EncodedPayload {
            payload: text.to_owned(),
            payload_encoding: PayloadEncoding::Utf8,
        },
        Err(_) => EncodedPayload {
            payload: base64::engine::general_purpose::STANDARD.encode(bytes),
            payload_encoding: PayloadEncoding::Base64,
        },
    }
}

/// Why a command's payload could not be turned into bytes. The Executer reports it as a
/// `command_result` error of kind `bad_command`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("payload is not valid base64: {0}")]
    InvalidBase64(String),
    #[error("payload_encoding is given but payload is missing")]
    EncodingWithoutPayload,
}

/// The bytes a command asks to send. A payload without `payload_encoding` is read as `utf8`
/// (the natural reading of a JSON string); no payload is an empty body.
pub(crate) fn decode_payload(
    payload: Option<&str>,
    encoding: Option<PayloadEncoding>,
) -> Result<Vec<u8>, PayloadError> {
    match (payload, encoding) {
        (None, None) => Ok(Vec::new()),
        (None, Some(_)) => Err(PayloadError::EncodingWithoutPayload),
        (Some(text), None | Some(PayloadEncoding::Utf8)) => Ok(text.as_bytes().to_vec()),
        (Some(text), Some(PayloadEncoding::Base64)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| PayloadError::InvalidBase64(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_utf8_when_it_can_be_and_base64_otherwise() {
        let text = encode_payload("22.5 °C".as_bytes());
        assert_eq!(text.payload_encoding, PayloadEncoding::Utf8);
        assert_eq!(text.payload, "22.5 °C");
        let binary = encode_payload(&[0xff, 0x00, 0x10]);
        assert_eq!(binary.payload_encoding, PayloadEncoding::Base64);
        assert_eq!(binary.payload, "/wAQ");
        assert_eq!(encode_payload(&[0xfe]).payload, "/g==", "padded");
        assert_eq!(encode_payload(b"").payload_encoding, PayloadEncoding::Utf8);
    }

    #[test]
    fn command_payload_decodes_by_its_encoding() {
        assert_eq!(
            decode_payload(Some("/wAQ"), Some(PayloadEncoding::Base64)).unwrap(),
            vec![0xff, 0x00, 0x10]
        );
        assert_eq!(decode_payload(Some("on"), None).unwrap(), b"on");
        assert_eq!(
            decode_payload(Some("/wAQ"), Some(PayloadEncoding::Utf8)).unwrap(),
            b"/wAQ"
        );
        assert_eq!(decode_payload(None, None).unwrap(), b"");
        assert!(matches!(
            decode_payload(Some("not base64!"), Some(PayloadEncoding::Base64)),
            Err(PayloadError::InvalidBase64(_))
        ));
        assert_eq!(
            decode_payload(None, Some(PayloadEncoding::Base64)),
            Err(PayloadError::EncodingWithoutPayload)
        );
    }
}
