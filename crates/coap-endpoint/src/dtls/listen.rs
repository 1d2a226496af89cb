//! `DTLSv1_listen`, which the `openssl` crate does not wrap. The demultiplexer has already
//! checked the hello's cookie statelessly; `DTLSv1_listen` then takes that second hello
//! (message_seq 1) into a fresh `SSL` and sets the handshake and record sequence numbers as if
//! the `SSL` had sent the HelloVerifyRequest itself, so the handshake continues with the
//! ServerHello. Without it OpenSSL would wait for a message_seq 0 that never comes.

use std::os::raw::{c_int, c_void};

use foreign_types::ForeignTypeRef;
use openssl::ssl::SslRef;

extern "C" {
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut c_void) -> c_int;
    fn BIO_ADDR_new() -> *mut c_void;
    fn BIO_ADDR_free(addr: *mut c_void);
}

/// What `DTLSv1_listen` made of the hello waiting in the `SSL`'s read BIO.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Listened {
    /// A hello with a verified cookie: continue with `SSL_accept`.
    Accepted,
    /// Anything else: the `SSL` is to be dropped.
    Refused,
}

/// Run `DTLSv1_listen` on `ssl`, whose read BIO holds one datagram.
pub(crate) fn listen(ssl: &SslRef) -> Listened {
    // SAFETY: `ssl` is a live SSL with both BIOs set (SslStream::new); the BIO_ADDR is
    // allocated here, only written by DTLSv1_listen, and freed before returning.
    unsafe {
        let addr = BIO_ADDR_new();
        if addr.is_null() {
            return Listened::Refused;
        }
        let r = DTLSv1_listen(ssl.as_ptr(), addr);
        BIO_ADDR_free(addr);
        if r == 1 {
            Listened::Accepted
        } else {
            Listened::Refused
        }
    }
}
