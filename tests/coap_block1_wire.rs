//! The client's Block1 upload (RFC 7959 §2.3) as a device sees it on the wire (issue 27).
//!
//! The other large-POST tests would pass without Block1: their receiving endpoint accepts one
//! big datagram. Here the receiver is a raw UDP socket that records every datagram the client
//! sends and answers like a constrained device (2.31 Continue per block, 2.04 at the end), so
//! the test sees each block's size, its Block1 NUM/M/SZX, Size1 and the reassembled body. A
//! second peer asks for smaller blocks in its first 2.31 (§2.3 size negotiation): the client
//! must continue with the smaller size at the byte offset it had reached.

#[path = "common/peers.rs"]
mod peers;

use std::time::Duration;

use coap_gateway::coap::{ClientRequest, Code, Endpoint, Method, TransmissionParams};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use peers::*;

/// Generous: a block's exchange on a loaded 2-core box, not a timing bound.
const WAIT: Duration = Duration::from_secs(10);
/// Every option the client may put on a block (Uri-Path, Content-Format, Block1, Size1) plus
/// the 4-byte header and an 8-byte token fit in this many bytes.
const HEADER_ROOM: usize = 48;

/// One datagram the peer received, decoded.
struct Seen {
    len: usize,
    block1: Option<(u32, bool, u8)>,
    size1: Option<u32>,
    payload: Vec<u8>,
}

fn szx_size(szx: u8) -> usize {
    16usize << szx
}

/// Answer one block: 2.31 with `reply_block` (NUM, M, SZX) while more follow, else 2.04.
fn answer(req: &Packet, reply: (u32, bool, u8), last: bool) -> Vec<u8> {
    let mut resp = Packet::new();
    resp.header.set_type(MessageType::Acknowledgement);
    resp.header.message_id = req.header.message_id;
    resp.header.code = MessageClass::from(if last { 0x44 } else { 0x5f });
    resp.set_token(req.get_token().to_vec());
    let v = (reply.0 << 4) | (u32::from(reply.1) << 3) | u32::from(reply.2);
    let bytes: Vec<u8> = if v == 0 {
        Vec::new()
    } else {
        let b = v.to_be_bytes();
        let first = b.iter().position(|x| *x != 0).unwrap_or(3);
        b[first..].to_vec()
    };
    resp.add_option(CoapOption::Block1, bytes);
    resp.to_bytes().expect("encode answer")
}

/// A client endpoint with `block_size`, default timers otherwise (no retransmission races).
async fn client_endpoint(block_size: usize) -> Endpoint {
    let handler = std::sync::Arc::new(TestHandler::default());
    let params = TransmissionParams {
        block_size,
        ..TransmissionParams::default()
    };
    Endpoint::bind(&["127.0.0.1:0".parse().unwrap()], params, handler)
        .await
        .expect("bind client endpoint")
}

/// Run the upload of `body` against a raw peer; `first_reply_szx` (if set) is the SZX the peer
/// puts in its first 2.31. Returns what the peer saw and the client's final code.
async fn upload(
    block_size: usize,
    body: Vec<u8>,
    first_reply_szx: Option<u8>,
) -> (Vec<Seen>, Code) {
    let ep = client_endpoint(block_size).await;
    let peer = raw_socket(V4).await;
    let peer_addr = peer.local_addr().unwrap();
    let client = ep.client();
    let sent = body.clone();
    let task = tokio::spawn(async move {
        client
            .request(
                peer_addr,
                ClientRequest::new(Method::Post, "/upload")
                    .payload(Some(42), sent)
                    .timeout(Duration::from_secs(60)),
            )
            .await
    });
    let mut seen: Vec<Seen> = Vec::new();
    // Bounded: at most one datagram per 16-byte block, plus a few retransmissions.
    for _ in 0..(body.len() / 16 + 16) {
        let Some((bytes, from)) = recv(&peer, WAIT).await else {
            panic!("the client stopped sending after {} datagrams", seen.len());
        };
        let pkt = Packet::from_bytes(&bytes).expect("the client sends valid CoAP");
        let block1 = block_value(&pkt, CoapOption::Block1);
        let (num, more, szx) = block1.expect("every datagram of the upload carries Block1");
        // A retransmission (same MID as the last one) is answered again, not recorded twice.
        let retransmit = seen.last().is_some_and(|s| s.block1 == block1);
        if !retransmit {
            seen.push(Seen {
                len: bytes.len(),
                block1,
                size1: uint_option(&pkt, CoapOption::Size1),
                payload: pkt.payload.clone(),
            });
        }
        let reply_szx = match first_reply_szx {
            Some(s) if num == 0 => s,
            _ => szx,
        };
        // The first 2.31 acknowledges block 0 at the client's size; its SZX asks for smaller.
        let reply = (num, more, reply_szx);
        peer.send_to(&answer(&pkt, reply, !more), from)
            .await
            .unwrap();
        if !more {
            break;
        }
    }
    let resp = tokio::time::timeout(WAIT, task)
        .await
        .expect("the request finishes after 2.04")
        .expect("task")
        .expect("the upload succeeds");
    (seen, resp.code)
}

#[tokio::test]
async fn block1_upload_is_split_into_numbered_blocks_on_the_wire() {
    let block = 64;
    let body = pattern(1000);
    let (seen, code) = upload(block, body.clone(), None).await;
    assert_eq!(code, Code::CHANGED);
    assert_eq!(
        seen.len(),
        body.len().div_ceil(block),
        "one datagram per block"
    );
    let mut reassembled = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let (num, more, szx) = s.block1.unwrap();
        assert_eq!(num as usize, i, "consecutive NUMs");
        assert_eq!(
            szx_size(szx),
            block,
            "block {i} announces the configured size"
        );
        let last = i + 1 == seen.len();
        assert_eq!(more, !last, "M set on all but the last block ({i})");
        assert!(
            s.len <= block + HEADER_ROOM,
            "datagram {i} is {} bytes, more than a {block}-byte block plus header",
            s.len
        );
        if !last {
            assert_eq!(s.payload.len(), block, "full blocks except the last");
        }
        assert_eq!(
            s.size1,
            (i == 0).then_some(body.len() as u32),
            "Size1 (the total) on the first block only"
        );
        reassembled.extend_from_slice(&s.payload);
    }
    assert_eq!(reassembled, body, "the blocks reassemble to the body sent");
}

#[tokio::test]
async fn a_smaller_szx_in_the_first_continue_shrinks_the_following_blocks() {
    // The client starts at 256 bytes; the device answers block 0 with SZX 2 (64 bytes).
    let body = pattern(1000);
    let (seen, code) = upload(256, body.clone(), Some(2)).await;
    assert_eq!(code, Code::CHANGED);
    let first = &seen[0];
    assert_eq!(first.block1, Some((0, true, 4)), "block 0 at 256 bytes");
    assert_eq!(first.payload, body[..256]);
    // The rest continues at byte 256 in 64-byte blocks: NUM 4 (256 / 64), 5, ...
    let rest = &seen[1..];
    assert_eq!(rest.len(), (body.len() - 256).div_ceil(64));
    let mut offset = 256;
    for (i, s) in rest.iter().enumerate() {
        let (num, more, szx) = s.block1.unwrap();
        assert_eq!(szx, 2, "block {num} uses the size the device asked for");
        assert_eq!(num as usize, 4 + i, "NUM counts 64-byte blocks from byte 0");
        assert_eq!(num as usize * 64, offset, "the right byte offset");
        let end = (offset + 64).min(body.len());
        assert_eq!(s.payload, body[offset..end], "block {num}'s bytes");
        assert_eq!(more, end < body.len());
        assert!(s.len <= 64 + HEADER_ROOM);
        assert_eq!(s.size1, None, "Size1 only on the first block");
        offset = end;
    }
    assert_eq!(offset, body.len(), "every byte sent exactly once");
}
