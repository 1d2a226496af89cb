//! The load generator's DTLS client: an OpenSSL DTLS 1.2 PSK client over a connected,
//! non-blocking UDP socket, one socket per session (the gateway tells sessions apart by source
//! address and port), as `crates/coap-endpoint/benches/dtls/client.rs` does it.
//!
//! Why raw FFI: the root package has no `openssl` dependency of its own (only the CoAP crate
//! has), and a bench may not add one; libssl is linked into every binary of this package
//! already through `openssl-sys`, so the dozen calls the client needs are declared here. The
//! `SSL` reads and writes through a `BIO_dgram` on the socket: one datagram per record flight.

use std::ffi::{c_char, c_int, c_long, c_uint, c_void, CString};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// The key every bench identity shares (the identities file holds it as `psk_hex`).
pub const PSK_KEY: &[u8; 16] = b"bench-dtls-psk-1";
/// The datagram size the sessions are limited to, as the gateway's.
const MTU: c_long = 1_280;
/// `TLS_PSK_WITH_AES_128_CCM_8`, RFC 7252 §9's mandatory PSK suite.
const SUITE: &str = "PSK-AES128-CCM8";

#[repr(C)]
pub struct SslCtx {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct Ssl {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct SslMethod {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct Bio {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct SslCipher {
    _opaque: [u8; 0],
}

type PskClientCb =
    unsafe extern "C" fn(*mut Ssl, *const c_char, *mut c_char, c_uint, *mut u8, c_uint) -> c_uint;

#[link(name = "ssl")]
#[link(name = "crypto")]
extern "C" {
    fn DTLS_client_method() -> *const SslMethod;
    fn SSL_CTX_new(method: *const SslMethod) -> *mut SslCtx;
    fn SSL_CTX_free(ctx: *mut SslCtx);
    fn SSL_CTX_ctrl(ctx: *mut SslCtx, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    fn SSL_CTX_set_cipher_list(ctx: *mut SslCtx, list: *const c_char) -> c_int;
    fn SSL_CTX_set_security_level(ctx: *mut SslCtx, level: c_int);
    fn SSL_CTX_set_options(ctx: *mut SslCtx, options: u64) -> u64;
    fn SSL_CTX_set_psk_client_callback(ctx: *mut SslCtx, cb: Option<PskClientCb>);
    fn SSL_new(ctx: *mut SslCtx) -> *mut Ssl;
    fn SSL_free(ssl: *mut Ssl);
    fn SSL_ctrl(ssl: *mut Ssl, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    fn SSL_set_ex_data(ssl: *mut Ssl, idx: c_int, data: *mut c_void) -> c_int;
    fn SSL_get_ex_data(ssl: *const Ssl, idx: c_int) -> *mut c_void;
    fn SSL_set_bio(ssl: *mut Ssl, rbio: *mut Bio, wbio: *mut Bio);
    fn SSL_set_connect_state(ssl: *mut Ssl);
    fn SSL_do_handshake(ssl: *mut Ssl) -> c_int;
    fn SSL_read(ssl: *mut Ssl, buf: *mut c_void, num: c_int) -> c_int;
    fn SSL_write(ssl: *mut Ssl, buf: *const c_void, num: c_int) -> c_int;
    fn SSL_get_error(ssl: *const Ssl, ret: c_int) -> c_int;
    fn SSL_shutdown(ssl: *mut Ssl) -> c_int;
    fn SSL_get_current_cipher(ssl: *const Ssl) -> *const SslCipher;
    fn SSL_CIPHER_get_name(cipher: *const SslCipher) -> *const c_char;
    fn BIO_new_dgram(fd: c_int, close_flag: c_int) -> *mut Bio;
    fn BIO_ctrl(bio: *mut Bio, cmd: c_int, larg: c_long, parg: *mut c_void) -> c_long;
    fn ERR_clear_error();
}

// From OpenSSL 3.0's ssl.h, tls1.h, dtls1.h and bio.h (the macros the calls stand for).
const SSL_CTRL_SET_MTU: c_int = 17;
const SSL_CTRL_SET_MIN_PROTO_VERSION: c_int = 123;
const SSL_CTRL_SET_MAX_PROTO_VERSION: c_int = 124;
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;
const DTLS1_2_VERSION: c_long = 0xFEFD;
const SSL_OP_NO_QUERY_MTU: u64 = 0x0000_1000;
const SSL_OP_NO_TICKET: u64 = 0x0000_4000;
const SSL_ERROR_WANT_READ: c_int = 2;
const SSL_ERROR_WANT_WRITE: c_int = 3;
const BIO_NOCLOSE: c_int = 0;
const BIO_CTRL_DGRAM_SET_CONNECTED: c_int = 32;
/// `SSL_set_app_data`'s slot: where each `SSL` finds the identity its callback sends.
const APP_DATA: c_int = 0;

/// Sends the `SSL`'s own identity (its app data, a NUL-terminated string) and the shared key.
unsafe extern "C" fn psk_client_cb(
    ssl: *mut Ssl,
    _hint: *const c_char,
    identity: *mut c_char,
    max_identity_len: c_uint,
    psk: *mut u8,
    max_psk_len: c_uint,
) -> c_uint {
    // SAFETY: OpenSSL passes a live `SSL`, an identity buffer of max_identity_len + 1 bytes
    // and a key buffer of max_psk_len bytes; the app data is the `CString` its `Conn` owns.
    unsafe {
        let ours = SSL_get_ex_data(ssl, APP_DATA) as *const c_char;
        if ours.is_null() {
            return 0;
        }
        let ours = std::ffi::CStr::from_ptr(ours).to_bytes_with_nul();
        if ours.len() > max_identity_len as usize || PSK_KEY.len() > max_psk_len as usize {
            return 0;
        }
        std::ptr::copy_nonoverlapping(ours.as_ptr() as *const c_char, identity, ours.len());
        std::ptr::copy_nonoverlapping(PSK_KEY.as_ptr(), psk, PSK_KEY.len());
    }
    PSK_KEY.len() as c_uint
}

/// A client context offering exactly PSK-AES128-CCM8 over DTLS 1.2.
pub struct Context(*mut SslCtx);

impl Context {
    pub fn new() -> Result<Context, String> {
        let suite = CString::new(SUITE).map_err(|e| e.to_string())?;
        // SAFETY: plain OpenSSL calls on a context this function owns until it returns it.
        unsafe {
            let ctx = SSL_CTX_new(DTLS_client_method());
            if ctx.is_null() {
                return Err("SSL_CTX_new failed".into());
            }
            let context = Context(ctx);
            let ok = SSL_CTX_ctrl(
                ctx,
                SSL_CTRL_SET_MIN_PROTO_VERSION,
                DTLS1_2_VERSION,
                std::ptr::null_mut(),
            ) == 1
                && SSL_CTX_ctrl(
                    ctx,
                    SSL_CTRL_SET_MAX_PROTO_VERSION,
                    DTLS1_2_VERSION,
                    std::ptr::null_mut(),
                ) == 1
                && SSL_CTX_set_cipher_list(ctx, suite.as_ptr()) == 1;
            if !ok {
                return Err(format!(
                    "cannot restrict the context to DTLS 1.2 and {SUITE}"
                ));
            }
            // CCM_8 sits below the default security level from OpenSSL 3.1 on.
            SSL_CTX_set_security_level(ctx, 0);
            SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET);
            SSL_CTX_set_psk_client_callback(ctx, Some(psk_client_cb));
            Ok(context)
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: every `SSL` made from it holds its own reference.
        unsafe { SSL_CTX_free(self.0) }
    }
}

/// Where a handshake stands after a step.
pub enum Step {
    Done,
    Pending,
    Failed(String),
}

/// One client session. Field order matters: the `SSL` goes (in `Drop`) before the identity
/// it points at and the socket its BIO reads.
pub struct Conn {
    ssl: *mut Ssl,
    _identity: Box<CString>,
    socket: UdpSocket,
    pub last_step: Instant,
}

// SAFETY: a `Conn` is used by one thread at a time; its `SSL` is never shared.
unsafe impl Send for Conn {}

fn sockaddr_in(server: SocketAddr) -> Result<libc::sockaddr_in, String> {
    let SocketAddr::V4(v4) = server else {
        return Err("the bench's DTLS client speaks IPv4 only".into());
    };
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    Ok(sa)
}

impl Conn {
    /// A new socket towards `server` and the first flight (the ClientHello) sent.
    pub fn connect(ctx: &Context, server: SocketAddr, identity: &str) -> Result<Conn, String> {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
        socket.connect(server).map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let identity = Box::new(CString::new(identity).map_err(|e| e.to_string())?);
        let mut peer = sockaddr_in(server)?;
        // SAFETY: the `SSL` takes the BIO; the BIO does not close the socket, which the
        // `Conn` owns and drops after the `SSL`; the identity outlives the `SSL` likewise.
        unsafe {
            let ssl = SSL_new(ctx.0);
            if ssl.is_null() {
                return Err("SSL_new failed".into());
            }
            let bio = BIO_new_dgram(socket.as_raw_fd(), BIO_NOCLOSE);
            if bio.is_null() {
                SSL_free(ssl);
                return Err("BIO_new_dgram failed".into());
            }
            // Connected: the BIO writes with send(2), to the socket's peer.
            BIO_ctrl(
                bio,
                BIO_CTRL_DGRAM_SET_CONNECTED,
                0,
                &mut peer as *mut libc::sockaddr_in as *mut c_void,
            );
            SSL_set_bio(ssl, bio, bio);
            SSL_ctrl(ssl, SSL_CTRL_SET_MTU, MTU, std::ptr::null_mut());
            SSL_set_ex_data(ssl, APP_DATA, identity.as_ptr() as *mut c_void);
            SSL_set_connect_state(ssl);
            let mut conn = Conn {
                ssl,
                _identity: identity,
                socket,
                last_step: Instant::now(),
            };
            if let Step::Failed(e) = conn.handshake() {
                return Err(e);
            }
            Ok(conn)
        }
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Advance the handshake with whatever the socket holds.
    pub fn handshake(&mut self) -> Step {
        self.last_step = Instant::now();
        // SAFETY: `ssl` is live for the `Conn`'s life.
        unsafe {
            ERR_clear_error();
            let r = SSL_do_handshake(self.ssl);
            if r == 1 {
                return Step::Done;
            }
            match SSL_get_error(self.ssl, r) {
                SSL_ERROR_WANT_READ | SSL_ERROR_WANT_WRITE => Step::Pending,
                code => Step::Failed(format!("handshake failed (SSL_get_error {code})")),
            }
        }
    }

    /// Retransmit the last flight if OpenSSL's timer has run out (a lost datagram).
    pub fn handle_timeout(&mut self) {
        self.last_step = Instant::now();
        // SAFETY: `ssl` is live.
        unsafe {
            SSL_ctrl(self.ssl, DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut());
        }
    }

    /// The negotiated suite's OpenSSL name, once established.
    pub fn cipher(&self) -> String {
        // SAFETY: `ssl` is live; the name is a static string of OpenSSL's.
        unsafe {
            let c = SSL_get_current_cipher(self.ssl);
            if c.is_null() {
                return "none".into();
            }
            std::ffi::CStr::from_ptr(SSL_CIPHER_get_name(c))
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Seal one CoAP message into one record; false when the socket would not take it.
    pub fn write(&mut self, message: &[u8]) -> bool {
        let Ok(len) = c_int::try_from(message.len()) else {
            return false;
        };
        // SAFETY: `message` is valid for `len` bytes.
        unsafe { SSL_write(self.ssl, message.as_ptr() as *const c_void, len) == len }
    }

    /// One CoAP message opened, or `None` when nothing (valid) is waiting.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: `buf` is valid for `len` bytes.
        let n = unsafe { SSL_read(self.ssl, buf.as_mut_ptr() as *mut c_void, len) };
        usize::try_from(n).ok().filter(|n| *n > 0)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: `ssl` is live until here. close_notify first, so the gateway forgets the
        // session now rather than at its idle timeout.
        unsafe {
            SSL_shutdown(self.ssl);
            SSL_free(self.ssl);
        }
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
            if fds[i].revents == 0 && c.last_step.elapsed() < Duration::from_secs(1) {
                continue;
            }
            if fds[i].revents == 0 {
                c.handle_timeout();
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
