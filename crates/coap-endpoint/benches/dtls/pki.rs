//! A throwaway P-256 PKI made at start: a CA, the server's certificate (CN localhost, SAN
//! 127.0.0.1) and one client certificate, all signed by the CA. The server loads its files
//! from a temporary directory (nothing is kept in the repository); the clients use the
//! objects directly.

use coap_endpoint::CertificateFiles;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};
use tempfile::TempDir;

use crate::client::ClientCertificate;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub struct Pki {
    pub client: ClientCertificate,
    pub files: CertificateFiles,
    /// Holds the files until the bench ends.
    _dir: TempDir,
}

fn p256_key() -> R<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn name(cn: &str) -> R<X509Name> {
    let mut b = X509NameBuilder::new()?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(b.build())
}

/// A certificate for `key` named `cn`, signed by `issuer` (self-signed, as a CA, without).
fn certificate(
    serial: u32,
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    server: bool,
) -> R<X509> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(BigNum::from_u32(serial)?.to_asn1_integer()?.as_ref())?;
    let subject = name(cn)?;
    b.set_subject_name(&subject)?;
    match issuer {
        Some((ca, _)) => b.set_issuer_name(ca.subject_name())?,
        None => b.set_issuer_name(&subject)?,
    }
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(2)?.as_ref())?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    match issuer {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(KeyUsage::new().critical().key_cert_sign().build()?)?;
        }
        Some((ca, _)) => {
            b.append_extension(BasicConstraints::new().critical().build()?)?;
            b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
            let aki = AuthorityKeyIdentifier::new()
                .keyid(false)
                .build(&b.x509v3_context(Some(ca), None))?;
            b.append_extension(aki)?;
            if server {
                b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
                let san = SubjectAlternativeName::new()
                    .ip("127.0.0.1")
                    .dns("localhost")
                    .build(&b.x509v3_context(Some(ca), None))?;
                b.append_extension(san)?;
            } else {
                b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
            }
        }
    }
    let signer = issuer.map(|(_, k)| k).unwrap_or(key);
    b.sign(signer, MessageDigest::sha256())?;
    Ok(b.build())
}

impl Pki {
    pub fn generate() -> R<Pki> {
        let ca_key = p256_key()?;
        let ca = certificate(1, "bench-ca", &ca_key, None, false)?;
        let server_key = p256_key()?;
        let server = certificate(2, "localhost", &server_key, Some((&ca, &ca_key)), true)?;
        let client_key = p256_key()?;
        let client = certificate(3, "dev-cert", &client_key, Some((&ca, &ca_key)), false)?;
        let dir = tempfile::tempdir()?;
        let write = |file: &str, pem: Vec<u8>| -> R<std::path::PathBuf> {
            let path = dir.path().join(file);
            std::fs::write(&path, pem)?;
            Ok(path)
        };
        let files = CertificateFiles {
            cert_file: write("server.pem", server.to_pem()?)?,
            key_file: write("server.key", server_key.private_key_to_pem_pkcs8()?)?,
            ca_file: Some(write("ca.pem", ca.to_pem()?)?),
        };
        Ok(Pki {
            client: ClientCertificate {
                cert: client,
                key: client_key,
                ca,
            },
            files,
            _dir: dir,
        })
    }
}
