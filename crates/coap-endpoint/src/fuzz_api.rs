//! The endpoint's untrusted-input entry points as fuzz targets (`fuzz/fuzz_targets/datagram.rs`,
//! `dtls_datagram.rs` for the DTLS demultiplexer and `dtls_record.rs` for an established
//! session's record layer) and the property tests below drive them: raw bytes through exactly
//! what the receive loop calls on a datagram, with oracles that check the results agree with
//! each other.
//!
//! Not part of the crate's API (hidden from the docs). It panics only when an oracle fails: that
//! panic is the fuzzer's finding. Nothing the input can contain may panic in the code under test.

use std::net::SocketAddr;

use coap_lite::Packet;

use crate::codec::{self, DecodeError};
use crate::Method;

const SOURCE: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    5683,
);
const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 5683);

/// A datagram as the endpoint sees it: `peek`, `decode`, then `parse_request` for a request
/// code or `parse_response` for anything else. Oracles: `decode` agrees with `peek` on type and
/// MID; a decoded packet re-encodes and decodes to the same packet.
pub fn datagram_invariant(data: &[u8]) {
    let peeked = codec::peek(data);
    match codec::decode(data) {
        Err(DecodeError::Ignore) => assert!(peeked.is_none(), "decode ignored a peekable datagram"),
        Err(DecodeError::Format { mtype, mid }) => {
            let (t, _, m) = peeked.expect("a format error needs a readable header");
            assert_eq!((t, m), (mtype, mid), "format error names another type/MID");
        }
        Ok(mut packet) => {
            let (t, code, m) = peeked.expect("a decoded datagram has a readable header");
            assert_eq!(t, codec::msg_type(&packet));
            assert_eq!(m, packet.header.message_id);
            assert_eq!(code, codec::code_of(&packet));
            if let Ok(bytes) = packet.to_bytes() {
                let again = Packet::from_bytes(&bytes).expect("re-encoded packet decodes");
                assert_eq!(again, packet, "decode(encode(p)) != p");
            }
            let _ = codec::parse_response(&packet);
            if Method::from_code(code).is_some() {
                let _ = codec::parse_request(&mut packet, SOURCE, LOCAL);
            }
        }
    }
}

/// What the DTLS demultiplexer does with a datagram from an address without a session, before
/// OpenSSL sees anything (`endpoint/transport/dtls.rs`): read the record header and the
/// ClientHello, check the cookie, mint one and build the HelloVerifyRequest. Oracles: a parsed
/// hello is an epoch-0 handshake record; the HelloVerifyRequest parses as a record and echoes
/// the hello's sequence number; a cookie minted for this hello verifies, for this address only.
pub fn dtls_datagram_invariant(data: &[u8]) {
    use crate::dtls::cookie::CookieJar;
    use crate::dtls::record::{client_hello, hello_verify_request, record_header};
    let header = record_header(data);
    let Some(hello) = client_hello(data) else {
        return;
    };
    let header = header.expect("a hello is a record");
    assert_eq!((header.content_type, header.epoch), (22, 0));
    assert_eq!(header.sequence, hello.sequence);
    thread_local! {
        static JAR: Option<CookieJar> = CookieJar::new().ok();
    }
    JAR.with(|jar| {
        let Some(jar) = jar else { return };
        let _ = jar.verify(SOURCE, &hello);
        let cookie = jar.mint(SOURCE, &hello).expect("a cookie");
        let hvr = hello_verify_request(hello.sequence, &cookie);
        let back = record_header(&hvr).expect("the HelloVerifyRequest is a record");
        assert_eq!(back.sequence, hello.sequence);
        let minted = crate::dtls::record::ClientHello {
            cookie: &cookie,
            ..hello
        };
        assert!(jar.verify(SOURCE, &minted), "a minted cookie must verify");
        assert!(!jar.verify(LOCAL, &minted), "a cookie is for one address");
    });
}

/// What an established session's own record layer (`dtls/protection.rs`) does with a datagram
/// from its peer. Oracles: bytes that are not exactly a record the peer sealed never yield
/// data (a forgery needs the key), and they never stop the genuine next record from opening
/// (a forged sequence number must not move the replay window).
pub fn dtls_record_invariant(data: &[u8]) {
    use crate::dtls::keys::{key_block, Aead};
    use crate::dtls::protection::{Protection, Record, Role};
    let Ok(keys) = key_block(&[0x42; 48], &[1; 32], &[2; 32]) else {
        return;
    };
    for aead in [Aead::Ccm8, Aead::Gcm] {
        let mut peer = Protection::new(aead, keys.clone(), Role::Client, 1, 1, 0);
        let mut ours = Protection::new(aead, keys.clone(), Role::Server, 1, 1, 0);
        let genuine = peer
            .seal_application_data(b"GET /rd-lookup/ep")
            .expect("seal");
        if data != genuine.as_slice() {
            let opened = ours.open(data);
            assert!(
                opened
                    .records
                    .iter()
                    .all(|r| !matches!(r, Record::ApplicationData(_))),
                "unauthenticated bytes yielded data"
            );
        }
        let opened = ours.open(&genuine);
        assert_eq!(
            opened.records,
            vec![Record::ApplicationData(b"GET /rd-lookup/ep".to_vec())],
            "the genuine record must still open"
        );
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random datagrams, and mutations of a valid request with options and payload, never
    /// panic and always satisfy the oracles (a fixed seed, so a failure reproduces).
    #[test]
    fn random_and_mutated_datagrams_keep_the_invariant() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00c0_a9e1);
        let valid: &[u8] = &[
            0x44, 0x01, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0xb2, b'r', b'd', 0x4d, 0x04, b'e',
            b'p', b'=', b'n', b'o', b'd', b'e', b'-', b'1', b'2', b'3', b'4', 0x11, 0x28, 0xff,
            b'<', b'/', b's', b'>',
        ];
        datagram_invariant(valid);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.gen_range(0..64);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut b = valid.to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.gen();
                }
                b.truncate(rng.gen_range(0..=b.len()));
                b
            };
            datagram_invariant(&bytes);
        }
    }

    /// Random datagrams and mutations of a real ClientHello through the DTLS demultiplexer's
    /// checks (a fixed seed).
    #[test]
    fn random_and_mutated_dtls_datagrams_keep_the_invariant() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00d7_1500);
        let hello = crate::dtls::record::tests::hello(b"", 0);
        assert!(crate::dtls::record::client_hello(&hello).is_some());
        dtls_datagram_invariant(&hello);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 4 == 0 {
                let len = rng.gen_range(0..96);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                let mut b = hello.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.gen();
                }
                b.truncate(rng.gen_range(0..=b.len()));
                b
            };
            dtls_datagram_invariant(&bytes);
        }
    }

    /// Random bytes and mutations of a genuine record through an established session's record
    /// layer (a fixed seed).
    #[test]
    fn random_and_mutated_dtls_records_keep_the_invariant() {
        use crate::dtls::keys::{key_block, Aead};
        use crate::dtls::protection::{Protection, Role};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00d7_1501);
        let keys = key_block(&[0x42; 48], &[1; 32], &[2; 32]).unwrap();
        let genuine = Protection::new(Aead::Ccm8, keys, Role::Client, 1, 1, 0)
            .seal_application_data(b"GET /rd-lookup/ep")
            .unwrap();
        dtls_record_invariant(&genuine);
        for round in 0..5_000 {
            let bytes: Vec<u8> = if round % 4 == 0 {
                let len = rng.gen_range(0..96);
                let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                // Often a plausible header, so the AEAD is reached.
                if b.len() >= 13 && round % 8 == 0 {
                    b[..5].copy_from_slice(&[23, 0xfe, 0xfd, 0, 1]);
                    let len = (b.len() - 13) as u16;
                    b[11..13].copy_from_slice(&len.to_be_bytes());
                }
                b
            } else {
                let mut b = genuine.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..b.len());
                    b[i] = rng.gen();
                }
                b.truncate(rng.gen_range(0..=b.len()));
                b
            };
            dtls_record_invariant(&bytes);
        }
    }
}
