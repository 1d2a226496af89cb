//! The few DTLS 1.2 wire structures the demultiplexer reads before any library sees a datagram
//! (RFC 6347 §4.1, §4.2.1, §4.3.2): the record header, an unfragmented ClientHello's fields
//! that a stateless cookie binds, and the HelloVerifyRequest that carries the cookie.
//!
//! Pure and allocation-free on the read side, so it can be fuzzed and a spoofed datagram costs
//! a parse and an HMAC, nothing more.

/// ContentType handshake (RFC 5246 §6.2.1).
pub(crate) const CONTENT_HANDSHAKE: u8 = 22;
/// HandshakeType client_hello.
const CLIENT_HELLO: u8 = 1;
/// HandshakeType hello_verify_request.
const HELLO_VERIFY_REQUEST: u8 = 3;
/// DTLS 1.0's wire version, which a HelloVerifyRequest carries whatever is negotiated later
/// (RFC 6347 §4.2.1).
const DTLS_1_0: [u8; 2] = [0xfe, 0xff];
/// Record header: type, version, epoch, sequence number (48 bits), length.
pub(crate) const RECORD_HEADER: usize = 13;
/// Handshake header: type, length (24), message_seq, fragment_offset (24), fragment_length (24).
const HANDSHAKE_HEADER: usize = 12;
/// Longest cookie RFC 6347 allows.
pub(crate) const MAX_COOKIE: usize = 255;

/// The first record of a datagram, as far as the demultiplexer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub content_type: u8,
    pub epoch: u16,
    /// The 48-bit record sequence number, as sent.
    pub sequence: [u8; 6],
}

/// Read the first record header of a datagram; `None` when it is no DTLS record.
pub(crate) fn record_header(datagram: &[u8]) -> Option<RecordHeader> {
    let h = datagram.get(..RECORD_HEADER)?;
    // Major version 0xfe is DTLS (1.0 = fe ff, 1.2 = fe fd).
    if h[1] != 0xfe || !(20..=25).contains(&h[0]) {
        return None;
    }
    let mut sequence = [0u8; 6];
    sequence.copy_from_slice(&h[5..11]);
    Some(RecordHeader {
        content_type: h[0],
        epoch: u16::from_be_bytes([h[3], h[4]]),
        sequence,
    })
}

/// The parts of a ClientHello a cookie binds (RFC 6347 §4.2.1: the client's address and the
/// hello's parameters), and the cookie it carries (empty on the first hello).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientHello<'a> {
    pub sequence: [u8; 6],
    /// client_version, random, session_id, as sent: one contiguous slice.
    pub version_random_session: &'a [u8],
    pub cookie: &'a [u8],
    /// cipher_suites and compression_methods with their length prefixes.
    pub suites_and_compression: &'a [u8],
}

/// Parse `datagram` as a first-epoch record holding a whole (unfragmented) ClientHello;
/// `None` for anything else, including a hello split over fragments, which a constrained
/// client never sends for a hello (and a cookie check cannot work on).
pub(crate) fn client_hello(datagram: &[u8]) -> Option<ClientHello<'_>> {
    let header = record_header(datagram)?;
    if header.content_type != CONTENT_HANDSHAKE || header.epoch != 0 {
        return None;
    }
    let record_len = usize::from(u16::from_be_bytes([datagram[11], datagram[12]]));
    let record = datagram.get(RECORD_HEADER..RECORD_HEADER + record_len)?;
    let hs = record.get(..HANDSHAKE_HEADER)?;
    if hs[0] != CLIENT_HELLO {
        return None;
    }
    let length = u24(&hs[1..4]);
    let fragment_offset = u24(&hs[6..9]);
    let fragment_length = u24(&hs[9..12]);
    if fragment_offset != 0 || fragment_length != length {
        return None;
    }
    let body = record.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + length)?;
    // client_version (2) + random (32), then session_id<0..32>.
    let session_len = usize::from(*body.get(34)?);
    if session_len > 32 {
        return None;
    }
    let cookie_at = 35 + session_len;
    let version_random_session = body.get(..cookie_at)?;
    let cookie_len = usize::from(*body.get(cookie_at)?);
    let cookie = body.get(cookie_at + 1..cookie_at + 1 + cookie_len)?;
    let suites_at = cookie_at + 1 + cookie_len;
    let suites_len = usize::from(u16::from_be_bytes([
        *body.get(suites_at)?,
        *body.get(suites_at + 1)?,
    ]));
    let compression_at = suites_at + 2 + suites_len;
    let compression_len = usize::from(*body.get(compression_at)?);
    let suites_and_compression = body.get(suites_at..compression_at + 1 + compression_len)?;
    Some(ClientHello {
        sequence: header.sequence,
        version_random_session,
        cookie,
        suites_and_compression,
    })
}

/// A HelloVerifyRequest carrying `cookie`, answering the hello whose record sequence number
/// was `sequence` (RFC 6347 §4.2.1: the server reuses it, so the answer holds no state).
pub(crate) fn hello_verify_request(sequence: [u8; 6], cookie: &[u8]) -> Vec<u8> {
    let cookie = &cookie[..cookie.len().min(MAX_COOKIE)];
    let body_len = 2 + 1 + cookie.len();
    let record_len = HANDSHAKE_HEADER + body_len;
    let mut out = Vec::with_capacity(RECORD_HEADER + record_len);
    out.push(CONTENT_HANDSHAKE);
    out.extend_from_slice(&DTLS_1_0);
    out.extend_from_slice(&[0, 0]); // epoch 0
    out.extend_from_slice(&sequence);
    out.extend_from_slice(&(record_len as u16).to_be_bytes());
    out.push(HELLO_VERIFY_REQUEST);
    out.extend_from_slice(&be24(body_len));
    out.extend_from_slice(&[0, 0]); // message_seq 0
    out.extend_from_slice(&[0, 0, 0]); // fragment_offset
    out.extend_from_slice(&be24(body_len));
    out.extend_from_slice(&DTLS_1_0);
    out.push(cookie.len() as u8);
    out.extend_from_slice(cookie);
    out
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

fn be24(n: usize) -> [u8; 3] {
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal DTLS 1.2 ClientHello in one record, with `cookie`.
    pub(crate) fn hello(cookie: &[u8], record_seq: u8) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7u8; 32]); // random
        body.push(0); // session_id
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0xa8]); // one suite: PSK-AES128-CCM8
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&[0, 0]); // no extensions
        let mut hs = vec![CLIENT_HELLO];
        hs.extend_from_slice(&be24(body.len()));
        hs.extend_from_slice(&[0, u8::from(!cookie.is_empty())]);
        hs.extend_from_slice(&[0, 0, 0]);
        hs.extend_from_slice(&be24(body.len()));
        hs.extend_from_slice(&body);
        let mut rec = vec![
            CONTENT_HANDSHAKE,
            0xfe,
            0xfd,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            record_seq,
        ];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn parses_a_hello_and_its_cookie() {
        let h = hello(b"abc", 1);
        let ch = client_hello(&h).unwrap();
        assert_eq!(ch.cookie, b"abc");
        assert_eq!(ch.sequence, [0, 0, 0, 0, 0, 1]);
        assert_eq!(ch.version_random_session.len(), 35);
        assert_eq!(ch.suites_and_compression, &[0, 2, 0xc0, 0xa8, 1, 0]);
        assert_eq!(client_hello(&hello(b"", 0)).unwrap().cookie, b"");
    }

    #[test]
    fn every_truncation_and_other_records_are_refused() {
        let h = hello(b"abc", 1);
        for n in 0..h.len() - 2 {
            assert!(client_hello(&h[..n]).is_none(), "prefix of {n} bytes");
        }
        let mut app = h.clone();
        app[0] = 23;
        assert!(client_hello(&app).is_none());
        let mut later_epoch = h.clone();
        later_epoch[4] = 1;
        assert!(client_hello(&later_epoch).is_none());
        assert!(record_header(b"\x40\x01\x00\x01coap").is_none());
    }

    #[test]
    fn a_hello_verify_request_is_smaller_than_the_hello_it_answers() {
        let h = hello(b"", 0);
        let hvr = hello_verify_request([0, 0, 0, 0, 0, 0], &[9u8; 32]);
        assert_eq!(hvr.len(), 13 + 12 + 3 + 32);
        assert!(hvr.len() < h.len(), "{} vs {}", hvr.len(), h.len());
        let header = record_header(&hvr).unwrap();
        assert_eq!(header.content_type, CONTENT_HANDSHAKE);
        assert_eq!(hvr[RECORD_HEADER], HELLO_VERIFY_REQUEST);
    }
}
