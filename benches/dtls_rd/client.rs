//! The load generator's DTLS client: an OpenSSL DTLS 1.2 PSK client over a connected,
//! non-blocking UDP socket, one socket per session (the gateway tells sessions apart by source
//! address and port), as `crates/coap-endpoint/benches/dtls/client.rs` does it.
//!
//! The `openssl` crate (a dev-dependency; the CoAP crate links the same libssl): its `SslStream`
//! reads and writes through a connected UDP socket, one datagram per record flight.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVersion};

/// The key every bench identity shares (the identities file holds it as `psk_hex`).
pub const PSK_KEY: &[u8; 16] = b"bench-dtls-psk-1";
/// The datagram size the sessions are limited to, as the gateway's.
const MTU: u32 = 1_280;
/// `TLS_PSK_WITH_AES_128_CCM_8`, RFC 7252 §9's mandatory PSK suite.
const SUITE: &str = "PSK-AES128-CCM8";

/// Where each `SSL` keeps the PSK identity its callback sends.
fn identity_index() -> Result<Index<Ssl, Vec<u8>>, ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, Vec<u8>>> = OnceLock::new();
    if let Some(i) = INDEX.get() {
        return Ok(*i);
    }
    let i = Ssl::new_ex_index::<Vec<u8>>()?;
    Ok(*INDEX.get_or_init(|| i))
}

/// A client context offering exactly PSK-AES128-CCM8 over DTLS 1.2.
pub struct Context(SslContext);

impl Context {
    pub fn new() -> Result<Context, String> {
        let restrict =
            |e: ErrorStack| format!("cannot restrict the context to DTLS 1.2 and {SUITE}: {e}");
        let mut b = SslContext::builder(SslMethod::dtls())
            .map_err(|e| format!("SSL_CTX_new failed: {e}"))?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(restrict)?;
        b.set_max_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(restrict)?;
        b.set_cipher_list(SUITE).map_err(restrict)?;
        // CCM_8 sits below the default security level from OpenSSL 3.1 on.
        b.set_security_level(0);
        b.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        let index = identity_index().map_err(|e| e.to_string())?;
        // Sends the `SSL`'s own identity (NUL-terminated) and the shared key.
        b.set_psk_client_callback(move |ssl, _hint, identity_out, psk_out| {
            let Some(ours) = ssl.ex_data(index) else {
                return Err(ErrorStack::get());
            };
            if ours.len() >= identity_out.len() || PSK_KEY.len() > psk_out.len() {
                return Err(ErrorStack::get());
            }
            identity_out[..ours.len()].copy_from_slice(ours);
            identity_out[ours.len()] = 0;
            psk_out[..PSK_KEY.len()].copy_from_slice(PSK_KEY);
            Ok(PSK_KEY.len())
        });
        Ok(Context(b.build()))
    }
}

/// Where a handshake stands after a step.
pub enum Step {
    Done,
    Pending,
    Failed(String),
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

/// One client session over its own socket.
pub struct Conn {
    stream: SslStream<UdpWire>,
    pub last_step: Instant,
}

impl Conn {
    /// A new socket towards `server` and the first flight (the ClientHello) sent.
    pub fn connect(ctx: &Context, server: SocketAddr, identity: &str) -> Result<Conn, String> {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
        socket.connect(server).map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut ssl = Ssl::new(&ctx.0).map_err(|e| format!("SSL_new failed: {e}"))?;
        ssl.set_mtu(MTU).map_err(|e| e.to_string())?;
        ssl.set_ex_data(
            identity_index().map_err(|e| e.to_string())?,
            identity.as_bytes().to_vec(),
        );
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, UdpWire(socket)).map_err(|e| e.to_string())?;
        let mut conn = Conn {
            stream,
            last_step: Instant::now(),
        };
        if let Step::Failed(e) = conn.handshake() {
            return Err(e);
        }
        Ok(conn)
    }

    pub fn fd(&self) -> RawFd {
        self.stream.get_ref().0.as_raw_fd()
    }

    /// Advance the handshake with whatever the socket holds. A step also retransmits the
    /// last flight when OpenSSL's timer has run out (a lost datagram).
    pub fn handshake(&mut self) -> Step {
        self.last_step = Instant::now();
        match self.stream.do_handshake() {
            Ok(()) => Step::Done,
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Step::Pending
            }
            Err(e) => Step::Failed(format!(
                "handshake failed (SSL_get_error {}): {}",
                e.code().as_raw(),
                e.ssl_error()
                    .map_or_else(|| e.to_string(), ToString::to_string)
            )),
        }
    }

    /// The negotiated suite's OpenSSL name, once established.
    pub fn cipher(&self) -> String {
        self.stream
            .ssl()
            .current_cipher()
            .map_or_else(|| "none".into(), |c| c.name().to_string())
    }

    /// Seal one CoAP message into one record; false when the socket would not take it.
    pub fn write(&mut self, message: &[u8]) -> bool {
        self.stream
            .ssl_write(message)
            .is_ok_and(|n| n == message.len())
    }

    /// One CoAP message opened, or `None` when nothing (valid) is waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.stream.ssl_read(buf).ok().filter(|n| *n > 0)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // close_notify, so the gateway forgets the session now rather than at its idle
        // timeout.
        let _ = self.stream.shutdown();
    }
}

/// M sessions, identity `<prefix><i>`, handshaken together from one thread within `budget`.
pub fn establish(
    ctx: &Context,
    server: SocketAddr,
    prefix: &str,
    m: usize,
    budget: Duration,
) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(m);
    for i in 0..m {
        conns.push(Conn::connect(ctx, server, &format!("{prefix}{i}"))?);
    }
    let mut done = vec![false; m];
    let mut fds: Vec<libc::pollfd> = conns.iter().map(|c| pollfd(c.fd())).collect();
    let deadline = Instant::now() + budget;
    while done.iter().any(|d| !d) {
        if Instant::now() >= deadline {
            let left = done.iter().filter(|d| !**d).count();
            return Err(format!(
                "{left} of {m} handshakes unfinished after {budget:?}"
            ));
        }
        poll_in(&mut fds, Duration::from_millis(50));
        for (i, c) in conns.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            // Without a datagram, a stalled handshake is stepped once a second: the step
            // retransmits the last flight when OpenSSL's timer (1 s, doubling) has run out.
            if fds[i].revents == 0 && c.last_step.elapsed() < Duration::from_secs(1) {
                continue;
            }
            match c.handshake() {
                Step::Done => done[i] = true,
                Step::Pending => {}
                Step::Failed(e) => return Err(format!("session {prefix}{i}: {e}")),
            }
        }
    }
    Ok(conns)
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
