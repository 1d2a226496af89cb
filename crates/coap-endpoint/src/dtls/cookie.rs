//! Stateless DTLS cookies (RFC 6347 §4.2.1): `HMAC-SHA256(secret, window, client address,
//! hello parameters)`. The demultiplexer answers a hello without a valid cookie with a
//! HelloVerifyRequest computed from the datagram alone, so a spoofed source costs the gateway
//! no state; only a hello that echoes a cookie minted for its address within the last one or
//! two windows gets a session.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use openssl::hash::MessageDigest;
use openssl::memcmp;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

use super::record::ClientHello;

/// How long a cookie stays valid: this window and the next.
const WINDOW_S: u64 = 60;
/// Bytes of HMAC sent as the cookie: the whole SHA-256 output.
pub(crate) const COOKIE_LEN: usize = 32;

/// The secret cookies are keyed with; random per process, so a restart invalidates cookies in
/// flight (a client then gets one more HelloVerifyRequest).
pub(crate) struct CookieJar {
    key: PKey<Private>,
}

impl CookieJar {
    pub(crate) fn new() -> Result<CookieJar, openssl::error::ErrorStack> {
        let mut secret = [0u8; 32];
        openssl::rand::rand_bytes(&mut secret)?;
        Ok(CookieJar {
            key: PKey::hmac(&secret)?,
        })
    }

    /// The cookie for `hello` from `peer`, in the current window.
    pub(crate) fn mint(
        &self,
        peer: SocketAddr,
        hello: &ClientHello<'_>,
    ) -> Option<[u8; COOKIE_LEN]> {
        self.mac(window_now(), peer, hello)
    }

    /// Whether `hello` carries a cookie minted for `peer` and these parameters in this window
    /// or the one before.
    pub(crate) fn verify(&self, peer: SocketAddr, hello: &ClientHello<'_>) -> bool {
        if hello.cookie.len() != COOKIE_LEN {
            return false;
        }
        let now = window_now();
        [now, now.wrapping_sub(1)].into_iter().any(|w| {
            self.mac(w, peer, hello)
                .is_some_and(|mac| memcmp::eq(&mac, hello.cookie))
        })
    }

    fn mac(
        &self,
        window: u64,
        peer: SocketAddr,
        hello: &ClientHello<'_>,
    ) -> Option<[u8; COOKIE_LEN]> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).ok()?;
        signer.update(&window.to_be_bytes()).ok()?;
        match peer.ip() {
            std::net::IpAddr::V4(ip) => signer.update(&ip.octets()).ok()?,
            std::net::IpAddr::V6(ip) => signer.update(&ip.octets()).ok()?,
        }
        signer.update(&peer.port().to_be_bytes()).ok()?;
        signer.update(hello.version_random_session).ok()?;
        signer.update(hello.suites_and_compression).ok()?;
        let mut out = [0u8; COOKIE_LEN];
        let n = signer.sign(&mut out).ok()?;
        (n == COOKIE_LEN).then_some(out)
    }
}

fn window_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / WINDOW_S)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::record::{client_hello, tests::hello};

    #[test]
    fn a_cookie_verifies_only_for_its_address_and_hello() {
        let jar = CookieJar::new().unwrap();
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let first = hello(b"", 0);
        let cookie = jar.mint(peer, &client_hello(&first).unwrap()).unwrap();
        let second = hello(&cookie, 1);
        let ch = client_hello(&second).unwrap();
        assert!(jar.verify(peer, &ch));
        assert!(!jar.verify("192.0.2.2:4000".parse().unwrap(), &ch));
        assert!(!jar.verify("192.0.2.1:4001".parse().unwrap(), &ch));
        let mut forged = cookie;
        forged[0] ^= 1;
        assert!(!jar.verify(peer, &client_hello(&hello(&forged, 1)).unwrap()));
        assert!(
            !CookieJar::new().unwrap().verify(peer, &ch),
            "another process's secret"
        );
    }
}
