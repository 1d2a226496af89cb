//! HTTPS for the admin API (`http.tls_cert_file` + `http.tls_key_file`): the PEM certificate
//! chain and private key made into a rustls 0.23 server config (ring provider, TLS 1.2 and
//! 1.3). Built by `config::http` when the config is loaded, so a missing file, a file without
//! a certificate or key, or a key that does not match the certificate is a config error at
//! start (and under `--check`); `server` then serves on it.
//!
//! [`AdminTls`] never prints its contents: its `Debug` names only the chain length, so a
//! debugged config cannot show the key.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// The admin server's TLS settings, ready to serve.
#[derive(Clone)]
pub struct AdminTls {
    config: Arc<rustls::ServerConfig>,
    chain_len: usize,
}

/// Why the certificate or key cannot be used. Names what is wrong, never the key's bytes.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum TlsFileError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")]
    NoCertificate,
    #[error("certificate {index} is not valid PEM: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) in the file: {reason}")]
    NoKey { reason: String },
    #[error("the key does not fit the certificate: {reason}")]
    Mismatch { reason: String },
}

impl AdminTls {
    /// From the PEM text of the chain (leaf first) and of the key.
    pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<AdminTls, TlsFileError> {
        let mut chain = Vec::new();
        for (index, item) in CertificateDer::pem_slice_iter(cert_pem).enumerate() {
            chain.push(item.map_err(|e| TlsFileError::BadCertificate {
                index,
                reason: e.to_string(),
            })?);
        }
        if chain.is_empty() {
            return Err(TlsFileError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsFileError::NoKey {
            reason: e.to_string(),
        })?;
        let chain_len = chain.len();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::Mismatch {
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsFileError::Mismatch {
                reason: e.to_string(),
            })?;
        Ok(AdminTls {
            config: Arc::new(config),
            chain_len,
        })
    }

    /// The rustls config to serve with (actix-web adds the `http/1.1` ALPN id).
    pub(crate) fn server_config(&self) -> rustls::ServerConfig {
        (*self.config).clone()
    }
}

impl fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminTls(chain of {}, key <redacted>)", self.chain_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matching_chain_and_key_load_and_do_not_print_the_key() {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key_pem = cert.signing_key.serialize_pem();
        let tls = AdminTls::from_pem(cert.cert.pem().as_bytes(), key_pem.as_bytes()).unwrap();
        let shown = format!("{tls:?}");
        assert_eq!(shown, "AdminTls(chain of 1, key <redacted>)");
        let body: String = key_pem.lines().filter(|l| !l.starts_with("---")).collect();
        assert!(!shown.contains(&body[..16]));
    }

    #[test]
    fn missing_pieces_and_a_foreign_key_are_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let (cert, key) = (a.cert.pem(), a.signing_key.serialize_pem());
        assert_eq!(
            AdminTls::from_pem(b"", key.as_bytes()).unwrap_err(),
            TlsFileError::NoCertificate
        );
        assert!(matches!(
            AdminTls::from_pem(cert.as_bytes(), cert.as_bytes()).unwrap_err(),
            TlsFileError::NoKey { .. }
        ));
        assert!(matches!(
            AdminTls::from_pem(cert.as_bytes(), b.signing_key.serialize_pem().as_bytes())
                .unwrap_err(),
            TlsFileError::Mismatch { .. }
        ));
    }
}
