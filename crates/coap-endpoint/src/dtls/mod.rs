//! CoAP over DTLS 1.2 (RFC 7252 §9, RFC 6347): the server's credentials and limits
//! ([`DtlsServerConfig`]), the OpenSSL context built from them, and the pieces the DTLS
//! transport (`endpoint/transport/dtls.rs`) is made of:
//! - `record`: the record and ClientHello fields read before any library sees a datagram;
//! - `cookie`: stateless cookies, so a spoofed hello gets a HelloVerifyRequest and no state;
//! - `listen`: `DTLSv1_listen`, which the `openssl` crate does not wrap;
//! - `buffers`: an idle session's record buffers given back and restored;
//! - `session`: one peer's session: its `SSL` over an in-memory wire for the handshake, then
//!   (for the suites we offer) its own record layer:
//! - `keys`: the record keys derived from the master secret (the TLS 1.2 PRF);
//! - `protection`: AEAD record protection, sequence numbers and the replay window;
//! - `trim`: the heap pages of dropped `SSL`s given back to the OS.
//!
//! Why OpenSSL (the system libssl 3): it has the suites RFC 7252 names
//! (`TLS_PSK_WITH_AES_128_CCM_8`, `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`), per-identity PSK
//! callbacks, certificate verification and cookie callbacks, and it is what libcoap's
//! `-openssl` build (our interop peer) uses. The per-peer demultiplexing is ours.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openssl::ex_data::Index;
use openssl::ssl::Ssl;

use openssl::ssl::{
    SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions,
    SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use thiserror::Error;

pub(crate) mod buffers;
pub(crate) mod cookie;
pub(crate) mod keys;
pub(crate) mod listen;
pub(crate) mod protection;
pub(crate) mod record;
pub(crate) mod session;
pub(crate) mod trim;

/// Where the server finds a PSK client's key: the application's identities, reloadable.
pub trait PskStore: Send + Sync + 'static {
    /// Copy the key of `identity` into `out` and return its length; `None` for an unknown
    /// identity (or one without a key), which fails the handshake. Must not log the key.
    fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize>;
}

/// The server's certificate chain and key, and the CA that client certificates must chain
/// to (certificate mode, RFC 7252 §9.1.3.3).
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Client certificates are required and verified against it when set; without it a
    /// client can only use PSK.
    pub ca_file: Option<PathBuf>,
}

/// The DTLS server's credentials and bounds.
#[derive(Clone)]
pub struct DtlsServerConfig {
    pub psk: Option<Arc<dyn PskStore>>,
    pub certificates: Option<CertificateFiles>,
    /// Sessions held at once (handshaking or established) over every DTLS socket of the
    /// endpoint; a hello beyond it is dropped.
    pub max_sessions: usize,
    /// A session from which nothing was received for this long is closed.
    pub idle_timeout: Duration,
    /// A handshake not finished within this is abandoned.
    pub handshake_timeout: Duration,
    /// New sessions per second per source address (and the burst), counted after the cookie
    /// exchange; 0 = unlimited.
    pub handshake_rate_per_s: f64,
    pub handshake_burst: f64,
    /// Loopback sources are exempt from the handshake rate.
    pub exempt_loopback: bool,
}

impl Default for DtlsServerConfig {
    fn default() -> Self {
        DtlsServerConfig {
            psk: None,
            certificates: None,
            max_sessions: 25_000,
            idle_timeout: Duration::from_secs(3_600),
            handshake_timeout: Duration::from_secs(10),
            handshake_rate_per_s: 20.0,
            handshake_burst: 40.0,
            exempt_loopback: true,
        }
    }
}

impl std::fmt::Debug for DtlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsServerConfig")
            .field("psk", &self.psk.is_some())
            .field("certificates", &self.certificates)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum DtlsError {
    #[error("DTLS needs a PSK store or a certificate")]
    NoCredentials,
    #[error("cannot load {what} from {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: openssl::error::ErrorStack,
    },
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// The PSK suites alone: what the client offers when it cannot verify a device's certificate.
const PSK_CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256";

/// The suites offered: RFC 7252 §9.1.3's mandatory CCM_8 ones and their GCM counterparts.
const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:\
                       ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256";

/// The server context: built once, shared by every session.
pub(crate) fn server_context(config: &DtlsServerConfig) -> Result<SslContext, DtlsError> {
    if config.psk.is_none() && config.certificates.is_none() {
        return Err(DtlsError::NoCredentials);
    }
    let mut b = SslContext::builder(SslMethod::dtls())?;
    common_settings(&mut b)?;
    // The cookie was checked by the demultiplexer before this SSL existed (`cookie.rs`);
    // DTLSv1_listen asks again and gets the same answer.
    b.set_options(SslOptions::COOKIE_EXCHANGE);
    b.set_cookie_generate_cb(|_, _| Err(openssl::error::ErrorStack::get()));
    b.set_cookie_verify_cb(|_, _| true);
    if let Some(store) = config.psk.clone() {
        b.set_psk_server_callback(move |_ssl, identity, out| {
            Ok(identity.and_then(|id| store.psk(id, out)).unwrap_or(0))
        });
    }
    if let Some(files) = &config.certificates {
        fn file<'p>(
            what: &'static str,
            path: &'p std::path::Path,
        ) -> impl FnOnce(openssl::error::ErrorStack) -> DtlsError + 'p {
            move |source| DtlsError::File {
                what,
                path: path.to_path_buf(),
                source,
            }
        }
        b.set_certificate_chain_file(&files.cert_file)
            .map_err(file("the certificate chain", &files.cert_file))?;
        b.set_private_key_file(&files.key_file, SslFiletype::PEM)
            .map_err(file("the private key", &files.key_file))?;
        b.check_private_key()
            .map_err(file("a key matching the certificate", &files.key_file))?;
        if let Some(ca) = &files.ca_file {
            b.set_ca_file(ca).map_err(file("the CA certificates", ca))?;
            // Requested only in certificate suites; a PSK handshake has no CertificateRequest.
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
    }
    Ok(b.build())
}

fn common_settings(b: &mut SslContextBuilder) -> Result<(), DtlsError> {
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    // OpenSSL 3.1 and later rate 64-bit-tag suites (CCM_8) below security level 1; RFC 7252
    // mandates them, so the level is lowered there. The suite list above is what keeps the
    // choice strong.
    if openssl::version::number() >= 0x3010_0000 {
        b.set_security_level(0);
    }
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
    // An idle session frees its record buffers (memory per session).
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(())
}

/// The `Ssl` ex-data slot holding the identity a client session offers its PSK for.
pub(crate) fn client_identity_index() -> Option<Index<Ssl, Arc<str>>> {
    static INDEX: OnceLock<Option<Index<Ssl, Arc<str>>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// The client context: the gateway opening a session to a `coaps://` device, with the PSK of
/// the identity the device registered with, or with the gateway's certificate (the device's
/// verified against `ca_file`). `None` without credentials.
pub(crate) fn client_context(config: &DtlsServerConfig) -> Result<Option<SslContext>, DtlsError> {
    if config.psk.is_none() && config.certificates.is_none() {
        return Ok(None);
    }
    let mut b = SslContext::builder(SslMethod::dtls())?;
    common_settings(&mut b)?;
    // A device's certificate is only worth something verified: without a CA to verify it
    // against, the client offers no certificate suites at all, or any host that receives at
    // a device's address could present a self-made certificate with the device's name as CN.
    let verifies_certificates = config
        .certificates
        .as_ref()
        .is_some_and(|c| c.ca_file.is_some());
    if !verifies_certificates {
        b.set_cipher_list(PSK_CIPHERS)?;
    }
    if let Some(store) = config.psk.clone() {
        b.set_psk_client_callback(move |ssl, _hint, identity_out, psk_out| {
            let identity = client_identity_index()
                .and_then(|index| ssl.ex_data(index))
                .cloned();
            let Some(identity) = identity else {
                return Ok(0);
            };
            let bytes = identity.as_bytes();
            // The identity goes out NUL-terminated.
            let Some(slot) = identity_out.get_mut(..=bytes.len()) else {
                return Ok(0);
            };
            slot[..bytes.len()].copy_from_slice(bytes);
            slot[bytes.len()] = 0;
            Ok(store.psk(bytes, psk_out).unwrap_or(0))
        });
    }
    if let Some(files) = &config.certificates {
        b.set_certificate_chain_file(&files.cert_file)
            .map_err(|source| DtlsError::File {
                what: "the certificate chain",
                path: files.cert_file.clone(),
                source,
            })?;
        b.set_private_key_file(&files.key_file, SslFiletype::PEM)
            .map_err(|source| DtlsError::File {
                what: "the private key",
                path: files.key_file.clone(),
                source,
            })?;
        if let Some(ca) = &files.ca_file {
            b.set_ca_file(ca).map_err(|source| DtlsError::File {
                what: "the CA certificates",
                path: ca.clone(),
                source,
            })?;
            b.set_verify(SslVerifyMode::PEER);
        }
    }
    if !verifies_certificates && config.psk.is_none() {
        // Certificates without a CA and no PSK: nothing the client could authenticate.
        return Ok(None);
    }
    Ok(Some(b.build()))
}

/// What the DTLS transport counts, for /metrics.
#[derive(Debug, Default)]
pub struct DtlsStats {
    pub hello_verify_sent: AtomicU64,
    pub handshakes_started: AtomicU64,
    pub handshakes_completed: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    /// Hellos dropped: the session table was full or the source over its handshake rate.
    pub hellos_refused: AtomicU64,
    /// Datagrams that were no DTLS record of a known session nor a hello.
    pub datagrams_dropped: AtomicU64,
    pub sessions: AtomicU64,
    /// Sessions switched from OpenSSL to the gateway's own record layer (`session.rs`).
    pub sessions_compacted: AtomicU64,
    /// Records of established sessions dropped: forged, replayed, or of another epoch.
    pub records_dropped: AtomicU64,
}

impl DtlsStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
