//! Devices over CoAP over DTLS with a pre-shared key (`--psk-identity-prefix P --psk-hex K`):
//! device i is identity `P<i>` with key K, registers over coaps and serves over the same
//! DTLS socket, so the gateway reaches it through that session (or a new one with the same
//! key). With `P` equal to `--prefix`, each identity is its own endpoint name, which an
//! identities file allows by default.

use std::fmt;
use std::sync::Arc;

use coap_endpoint::{DtlsServerConfig, PskStore};

/// The fleet's PSK scheme.
#[derive(Clone)]
pub struct SimPsk {
    prefix: String,
    key: Arc<[u8]>,
}

impl fmt::Debug for SimPsk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPsk")
            .field("prefix", &self.prefix)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SimPsk {
    /// From the two options; both or neither. The error names the option, never the key.
    pub fn from_options(prefix: Option<&str>, hex: Option<&str>) -> Result<Option<SimPsk>, String> {
        match (prefix, hex) {
            (None, None) => Ok(None),
            (Some(prefix), Some(hex)) => {
                let key = decode_hex(hex)
                    .filter(|k| (1..=64).contains(&k.len()))
                    .ok_or("--psk-hex must be 1 to 64 bytes of hexadecimal")?;
                Ok(Some(SimPsk {
                    prefix: prefix.to_string(),
                    key: key.into(),
                }))
            }
            _ => Err("--psk-identity-prefix and --psk-hex go together".into()),
        }
    }

    /// Device `index`'s identity.
    pub fn identity(&self, index: usize) -> Arc<str> {
        Arc::from(format!("{}{index}", self.prefix))
    }

    /// Device `index`'s DTLS configuration: its own identity and key only.
    pub fn device_config(&self, index: usize) -> DtlsServerConfig {
        DtlsServerConfig {
            psk: Some(Arc::new(DeviceKey {
                identity: self.identity(index),
                key: Arc::clone(&self.key),
            })),
            max_sessions: 16,
            handshake_rate_per_s: 0.0,
            ..DtlsServerConfig::default()
        }
    }
}

/// One device's key: offered for its own identity (as client) and accepted for it (as
/// server, when the gateway opens the session).
struct DeviceKey {
    identity: Arc<str>,
    key: Arc<[u8]>,
}

impl PskStore for DeviceKey {
    fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize> {
        if identity != self.identity.as_bytes() {
            return None;
        }
        out.get_mut(..self.key.len())?.copy_from_slice(&self.key);
        Some(self.key.len())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_go_together_and_the_key_never_prints() {
        assert!(SimPsk::from_options(None, None).unwrap().is_none());
        assert!(SimPsk::from_options(Some("sim-"), None).is_err());
        assert!(SimPsk::from_options(Some("sim-"), Some("xyz")).is_err());
        let psk = SimPsk::from_options(Some("sim-"), Some("7365637265ff"))
            .unwrap()
            .unwrap();
        assert_eq!(&*psk.identity(3), "sim-3");
        assert!(!format!("{psk:?}").contains("7365"));
        let store = DeviceKey {
            identity: psk.identity(3),
            key: Arc::clone(&psk.key),
        };
        let mut out = [0u8; 64];
        assert_eq!(store.psk(b"sim-3", &mut out), Some(6));
        assert_eq!(&out[..6], b"secre\xff");
        assert_eq!(store.psk(b"sim-4", &mut out), None);
    }
}
