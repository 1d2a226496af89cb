//! The load generator's DTLS client: an OpenSSL client `SSL` over a connected, non-blocking
//! UDP socket, one socket per session (the server tells sessions apart by source address and
//! port). The crate has no DTLS client yet; this one exists only to load the server.
//!
//! Non-blocking so that one thread drives many handshakes at once (`poll` says which socket
//! has a datagram). OpenSSL's client answers the HelloVerifyRequest itself; its retransmission
//! timer (1 s, doubling) is checked whenever the handshake is stepped, so a stalled handshake
//! is stepped now and then even without a datagram.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::ssl::Ssl;
use openssl::ssl::{
    ErrorCode, SslContext, SslMethod, SslOptions, SslSessionCacheMode, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::X509;

/// The key every bench identity shares (the server's store answers it for any `dev-*`).
pub const PSK_KEY: &[u8; 16] = b"bench-dtls-psk-1";
/// The datagram size the sessions are limited to, as the server's (`dtls::session::MTU`).
const MTU: u32 = 1_280;

/// The suites measured: RFC 7252 §9's mandatory CCM_8 ones and their GCM counterparts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    PskCcm8,
    PskGcm,
    EcdsaCcm8,
    EcdsaGcm,
}

impl Suite {
    fn openssl_name(self) -> &'static str {
        match self {
            Suite::PskCcm8 => "PSK-AES128-CCM8",
            Suite::PskGcm => "PSK-AES128-GCM-SHA256",
            Suite::EcdsaCcm8 => "ECDHE-ECDSA-AES128-CCM8",
            Suite::EcdsaGcm => "ECDHE-ECDSA-AES128-GCM-SHA256",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Suite::PskCcm8 => "psk_ccm8",
            Suite::PskGcm => "psk_gcm",
            Suite::EcdsaCcm8 => "cert_ccm8",
            Suite::EcdsaGcm => "cert_gcm",
        }
    }
}

/// The client's certificate, its key and the CA the server's certificate must chain to.
pub struct ClientCertificate {
    pub cert: X509,
    pub key: PKey<Private>,
    pub ca: X509,
}

/// Where each `SSL` keeps the PSK identity its callback sends.
fn identity_index() -> Result<Index<Ssl, Vec<u8>>, ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, Vec<u8>>> = OnceLock::new();
    if let Some(i) = INDEX.get() {
        return Ok(*i);
    }
    let i = Ssl::new_ex_index::<Vec<u8>>()?;
    Ok(*INDEX.get_or_init(|| i))
}

/// A client context offering exactly `suite`; certificate suites need `certificate`.
pub fn context(
    suite: Suite,
    certificate: Option<&ClientCertificate>,
) -> Result<SslContext, ErrorStack> {
    let mut b = SslContext::builder(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(suite.openssl_name())?;
    // As the server: CCM_8 sits below the default security level from OpenSSL 3.1 on.
    if openssl::version::number() >= 0x3010_0000 {
        b.set_security_level(0);
    }
    b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // RFC 7252 §9.1.3.3: secp256r1 for ECDHE, as a constrained device offers it.
    b.set_groups_list("P-256")?;
    match suite {
        Suite::PskCcm8 | Suite::PskGcm => {
            let index = identity_index()?;
            b.set_psk_client_callback(move |ssl, _hint, identity_out, psk_out| {
                let identity = ssl.ex_data(index).map(Vec::as_slice).unwrap_or(b"dev-0");
                // The identity goes out NUL-terminated.
                if identity.len() >= identity_out.len() || PSK_KEY.len() > psk_out.len() {
                    return Err(ErrorStack::get());
                }
                identity_out[..identity.len()].copy_from_slice(identity);
                identity_out[identity.len()] = 0;
                psk_out[..PSK_KEY.len()].copy_from_slice(PSK_KEY);
                Ok(PSK_KEY.len())
            });
        }
        Suite::EcdsaCcm8 | Suite::EcdsaGcm => {
            if let Some(c) = certificate {
                b.set_certificate(&c.cert)?;
                b.set_private_key(&c.key)?;
                b.check_private_key()?;
                b.cert_store_mut().add_cert(c.ca.clone())?;
                b.set_verify(SslVerifyMode::PEER);
            }
        }
    }
    Ok(b.build())
}

/// A connected UDP socket as the `SSL`'s transport: one datagram per read and per write.
pub struct UdpWire(UdpSocket);

impl Read for UdpWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for UdpWire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a handshake stands after a step.
pub enum Step {
    Done,
    Pending,
    Failed(String),
}

/// What a read on an established session gave.
pub enum Read1 {
    Data(usize),
    Empty,
    Closed,
}

/// One client session.
pub struct Conn {
    stream: SslStream<UdpWire>,
    pub started: Instant,
    pub last_step: Instant,
}

impl Conn {
    /// A new socket towards `server` and the first flight (the ClientHello) sent.
    pub fn connect(
        ctx: &SslContext,
        server: SocketAddr,
        identity: &[u8],
    ) -> Result<(Conn, Step), Box<dyn std::error::Error + Send + Sync>> {
        let started = Instant::now();
        let socket = UdpSocket::bind(("127.0.0.1", 0))?;
        socket.connect(server)?;
        socket.set_nonblocking(true)?;
        let mut ssl = Ssl::new(ctx)?;
        ssl.set_mtu(MTU)?;
        ssl.set_ex_data(identity_index()?, identity.to_vec());
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, UdpWire(socket))?;
        let mut conn = Conn {
            stream,
            started,
            last_step: started,
        };
        let step = conn.handshake();
        Ok((conn, step))
    }

    pub fn fd(&self) -> RawFd {
        self.stream.get_ref().0.as_raw_fd()
    }

    /// Advance the handshake with whatever the socket holds (or retransmit on OpenSSL's
    /// timer).
    pub fn handshake(&mut self) -> Step {
        self.last_step = Instant::now();
        match self.stream.do_handshake() {
            Ok(()) => Step::Done,
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Step::Pending
            }
            Err(e) => Step::Failed(match e.ssl_error() {
                Some(stack) => stack.to_string(),
                None => e.to_string(),
            }),
        }
    }

    /// The negotiated suite's OpenSSL name, once established.
    pub fn cipher(&self) -> Option<&'static str> {
        self.stream.ssl().current_cipher().map(|c| c.name())
    }

    /// Seal one CoAP message into one record; false when the socket would not take it.
    pub fn write(&mut self, message: &[u8]) -> bool {
        self.stream.ssl_write(message).is_ok()
    }

    pub fn read(&mut self, buf: &mut [u8]) -> Read1 {
        match self.stream.ssl_read(buf) {
            Ok(n) => Read1::Data(n),
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Read1::Empty
            }
            Err(_) => Read1::Closed,
        }
    }

    /// close_notify, so the server forgets the session now rather than at its idle timeout.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown();
    }
}

/// `poll(2)` for input on `fds`; the number ready (0 on timeout or error).
pub fn poll_in(fds: &mut [libc::pollfd], timeout: Duration) -> usize {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    usize::try_from(n).unwrap_or(0)
}

pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
