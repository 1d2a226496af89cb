//! `platform.ca_file`: PEM certificates trusted for `wss://` besides the public web roots (a
//! platform behind a private CA, or a self-signed certificate). Read once at start by
//! `Config::load` (a missing, unreadable or certificate-less file is a config error naming the
//! key); the DER certificates end up in `LinkSettings::extra_root_certs`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use thiserror::Error;

/// Why a CA file cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum CaFileError {
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")]
    NoCertificate,
    #[error("certificate {index} is not valid PEM: {reason}")]
    BadPem { index: usize, reason: String },
    #[error("certificate {index} cannot be a trust anchor: {reason}")]
    Unusable { index: usize, reason: String },
}

/// Every `CERTIFICATE` section of a PEM document, each checked to be usable as a root.
/// Other sections (keys, CRLs) are ignored.
pub(crate) fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let mut certs = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = item.map_err(|e| CaFileError::BadPem {
            index,
            reason: e.to_string(),
        })?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| CaFileError::Unusable {
            index,
            reason: e.to_string(),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate);
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(n: usize) -> String {
        (0..n)
            .map(|i| {
                rcgen::generate_simple_self_signed(vec![format!("host{i}.test")])
                    .unwrap()
                    .cert
                    .pem()
            })
            .collect()
    }

    #[test]
    fn one_or_more_certificates_are_read_in_order() {
        assert_eq!(parse_pem_certs(pem_of(1).as_bytes()).unwrap().len(), 1);
        let two = pem_of(2);
        let certs = parse_pem_certs(two.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_ne!(certs[0], certs[1]);
    }

    #[test]
    fn a_file_without_certificates_or_with_a_broken_one_is_refused() {
        assert_eq!(parse_pem_certs(b""), Err(CaFileError::NoCertificate));
        assert_eq!(
            parse_pem_certs(b"just some text\n"),
            Err(CaFileError::NoCertificate)
        );
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certs(broken.as_bytes()),
            Err(CaFileError::BadPem { index: 0, .. })
        ));
        // Valid base64, but not a certificate.
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certs(garbage.as_bytes()),
            Err(CaFileError::Unusable { index: 0, .. })
        ));
    }
}
