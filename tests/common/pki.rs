//! A test CA (P-256) and the certificates it signs, written as PEM files: DTLS certificate
//! mode (`rd_coaps`) and TLS to etcd (`ha_rd`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A CA (P-256) and what it signs, written as PEM files into a directory.
pub struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write CA");
        Pki {
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf with subject CN `cn` (and SANs `sans`): `(cert.pem, key.pem)` paths.
    pub fn leaf(&self, dir: &Path, cn: &str, sans: &[&str], file: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        let (c, k) = (
            dir.join(format!("{file}-cert.pem")),
            dir.join(format!("{file}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}
