//! Server side of the CoAP endpoint over real UDP on 127.0.0.1 and ::1: answers, dedup,
//! ping, format errors, option errors, Block2 and Block1, and a fuzz-style flood.

#[path = "common/peers.rs"]
mod peers;

use std::sync::atomic::Ordering;
use std::time::Duration;

use coap_gateway::coap::Code;
use coap_lite::{CoapOption, MessageType, Packet};
use peers::*;
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn coap_crate_client_gets_from_our_server() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let url = format!("coap://{local}/x");
        let resp = coap::UdpCoAPClient::get_with_timeout(&url, WAIT)
            .await
            .unwrap();
        assert_eq!(resp.message.payload, b"hello", "{addr}");
        assert_eq!(
            resp.message.header.code,
            coap_lite::MessageClass::Response(coap_lite::ResponseType::Content)
        );
    }
}

#[tokio::test]
async fn piggybacked_ack_echoes_mid_and_token() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        sock.send_to(&get(0x4242, "/x"), local).await.unwrap();
        let (p, from) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(from, local);
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.message_id, 0x4242);
        assert_eq!(p.get_token(), &[0xa, 0xb]);
        assert_eq!(code(&p), Code::CONTENT);
        assert_eq!(p.payload, b"hello");
    }
}

#[tokio::test]
async fn retransmitted_con_is_answered_from_the_cache_and_handled_once() {
    for addr in [V4, V6] {
        let (_ep, h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        let msg = get(7, "/count");
        sock.send_to(&msg, local).await.unwrap();
        let (first, _) = recv(&sock, WAIT).await.unwrap();
        sock.send_to(&msg, local).await.unwrap();
        let (second, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(first, second, "the duplicate gets the cached bytes");
        assert_eq!(h.count_runs.load(Ordering::SeqCst), 1, "handler ran once");
        // A new MID is a new request.
        sock.send_to(&get(8, "/count"), local).await.unwrap();
        let (p, _) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(p.payload, b"2");
    }
}

#[tokio::test]
async fn duplicate_of_a_slow_request_runs_the_handler_once() {
    // Piggybacked (no separate response within 2 s) even though the handler waits 50 ms.
    let params = coap_gateway::coap::TransmissionParams {
        separate_response_after: Duration::from_secs(2),
        ..fast_params()
    };
    let (_ep, h, local) = start_with(V4, params).await;
    let sock = raw_socket(V4).await;
    let msg = get(9, "/slow");
    sock.send_to(&msg, local).await.unwrap();
    sock.send_to(&msg, local).await.unwrap();
    let (p, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(p.payload, b"slow");
    assert!(
        recv(&sock, Duration::from_millis(200)).await.is_none(),
        "one answer while in progress"
    );
    sock.send_to(&msg, local).await.unwrap();
    let (again, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(again.payload, b"slow");
    assert_eq!(h.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn empty_con_ping_gets_rst() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        sock.send_to(&[0x40, 0, 0x12, 0x34], local).await.unwrap();
        let (bytes, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(bytes, vec![0x70, 0, 0x12, 0x34]);
    }
}

#[tokio::test]
async fn malformed_con_gets_rst_and_malformed_non_gets_nothing() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        // CON, TKL 4 but only 1 token byte.
        sock.send_to(&[0x44, 1, 0x00, 0x05, 9], local)
            .await
            .unwrap();
        let (bytes, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(bytes, vec![0x70, 0, 0x00, 0x05]);
        // CON, option delta 15 (reserved).
        sock.send_to(&[0x40, 1, 0x00, 0x06, 0xf1, 0], local)
            .await
            .unwrap();
        let (bytes, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(bytes, vec![0x70, 0, 0x00, 0x06]);
        // The same errors as NON are dropped.
        sock.send_to(&[0x54, 1, 0x00, 0x07, 9], local)
            .await
            .unwrap();
        sock.send_to(&[0x50, 1, 0x00, 0x08, 0xf1, 0], local)
            .await
            .unwrap();
        assert!(recv(&sock, Duration::from_millis(300)).await.is_none());
    }
}

#[tokio::test]
async fn unknown_critical_option_is_4_02_and_elective_is_ignored() {
    let (_ep, _h, local) = start(V6).await;
    let sock = raw_socket(V6).await;
    let mut p = request(MessageType::Confirmable, 1, 1, &[1], "/x");
    p.add_option(CoapOption::Unknown(65001), vec![1]);
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::BAD_OPTION);
    assert_eq!(r.header.get_type(), MessageType::Acknowledgement);

    let mut p = request(MessageType::Confirmable, 1, 2, &[1], "/x");
    p.add_option(CoapOption::Unknown(65000), vec![1]);
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::CONTENT);

    // Unknown method code 0.09 → 4.05.
    let p = request(MessageType::Confirmable, 9, 3, &[1], "/x");
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn non_request_gets_a_non_response() {
    let (_ep, _h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    let p = request(MessageType::NonConfirmable, 1, 77, &[3, 4], "/x");
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(r.header.get_type(), MessageType::NonConfirmable);
    assert_eq!(r.get_token(), &[3, 4]);
    assert_eq!(r.payload, b"hello");
}

#[tokio::test]
async fn block2_of_10_kib_block_by_block_over_raw_udp() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        let mut body = Vec::new();
        let mut num = 0u32;
        loop {
            let mut p = request(
                MessageType::Confirmable,
                1,
                100 + num as u16,
                &[num as u8],
                "/big",
            );
            if num > 0 {
                // Ask for 512-byte blocks from the second one on (late negotiation).
                let v = (num << 4) | 5;
                p.add_option(CoapOption::Block2, v.to_be_bytes()[1..].to_vec());
            }
            sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
            let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
            assert_eq!(code(&r), Code::CONTENT);
            let (n, more, szx) = block_value(&r, CoapOption::Block2).unwrap();
            if num == 0 {
                assert_eq!((n, szx), (0, 6), "first block at the configured 1024 bytes");
                assert_eq!(uint_option(&r, CoapOption::Size2), Some(10 * 1024));
                body.extend_from_slice(&r.payload);
                num = 2; // 1024 bytes = two 512-byte blocks
                continue;
            }
            assert_eq!((n, szx), (num, 5));
            body.extend_from_slice(&r.payload);
            if !more {
                break;
            }
            num += 1;
        }
        assert_eq!(body, pattern(10 * 1024), "{addr}");
    }
}

/// Follow-up blocks come from the endpoint's Block2 cache (the handler runs once) and are the
/// same bytes as slicing the handler's shared body, block by block.
#[tokio::test]
async fn block2_follow_ups_from_the_cache_slice_the_shared_body() {
    let (_ep, h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    let mut num = 0u32;
    loop {
        let mut p = request(
            MessageType::Confirmable,
            1,
            300 + num as u16,
            &[9],
            "/shared",
        );
        if num > 0 {
            let v = (num << 4) | 6;
            p.add_option(CoapOption::Block2, v.to_be_bytes()[2..].to_vec());
        }
        sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
        let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(code(&r), Code::CONTENT);
        let (n, more, szx) = block_value(&r, CoapOption::Block2).unwrap();
        assert_eq!((n, szx), (num, 6));
        let body = h.shared_body.get().expect("the handler made the body");
        let start = num as usize * 1024;
        let end = (start + 1024).min(body.len());
        assert_eq!(r.payload, body[start..end], "block {num}");
        if !more {
            break;
        }
        num += 1;
    }
    assert_eq!(num, 9, "10 KiB in 1 KiB blocks");
    assert_eq!(
        h.shared_runs.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "follow-up blocks were served from the Block2 cache"
    );
}

#[tokio::test]
async fn coap_crate_client_reassembles_our_block2() {
    let (_ep, _h, local) = start(V4).await;
    let url = format!("coap://{local}/big");
    let resp = coap::UdpCoAPClient::get_with_timeout(&url, WAIT)
        .await
        .unwrap();
    assert_eq!(resp.message.payload, pattern(10 * 1024));
}

#[tokio::test]
async fn block_out_of_range_is_4_02() {
    let (_ep, _h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    let mut p = request(MessageType::Confirmable, 1, 1, &[1], "/x");
    p.add_option(CoapOption::Block2, vec![0x56]); // num 5, szx 6
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::BAD_OPTION);
}

#[tokio::test]
async fn block1_upload_over_raw_udp_with_continue() {
    let (_ep, _h, local) = start(V6).await;
    let sock = raw_socket(V6).await;
    let body = pattern(3000);
    let chunks: Vec<&[u8]> = body.chunks(1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let more = i + 1 < chunks.len();
        let mut p = request(MessageType::Confirmable, 2, 500 + i as u16, &[9], "/echo");
        let v = ((i as u32) << 4) | (u32::from(more) << 3) | 6;
        p.add_option(CoapOption::Block1, v.to_be_bytes()[2..].to_vec());
        p.payload = chunk.to_vec();
        sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
        let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
        let (n, m, _) = block_value(&r, CoapOption::Block1).unwrap();
        assert_eq!((n, m), (i as u32, more));
        if more {
            assert_eq!(code(&r), Code::CONTINUE);
        } else {
            assert_eq!(code(&r), Code::CHANGED);
            // The echo is larger than a block, so it comes back block-wise (RFC 7959 §3.2).
            assert_eq!(
                uint_option(&r, CoapOption::Size2),
                Some(3000),
                "whole body echoed"
            );
            assert_eq!(block_value(&r, CoapOption::Block2), Some((0, true, 6)));
            assert!(r.payload == body[..1024], "first block of the echo");
        }
    }
    // A middle block without a start is 4.08.
    let mut p = request(MessageType::Confirmable, 2, 600, &[9], "/echo");
    p.add_option(CoapOption::Block1, vec![0x1e]);
    p.payload = vec![0; 1024];
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::REQUEST_ENTITY_INCOMPLETE);
}

#[tokio::test]
async fn block1_over_the_body_bound_is_4_13() {
    let params = coap_gateway::coap::TransmissionParams {
        max_body: 2048,
        ..fast_params()
    };
    let (_ep, _h, local) = start_with(V4, params).await;
    let sock = raw_socket(V4).await;
    let mut p = request(MessageType::Confirmable, 2, 1, &[9], "/echo");
    p.add_option(CoapOption::Block1, vec![0x0e]);
    p.add_option(CoapOption::Size1, 5000u32.to_be_bytes()[2..].to_vec());
    p.payload = vec![0; 1024];
    sock.send_to(&p.to_bytes().unwrap(), local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(code(&r), Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(uint_option(&r, CoapOption::Size1), Some(2048));
}

#[tokio::test]
async fn fuzz_10000_random_and_truncated_datagrams_then_a_request_works() {
    for addr in [V4, V6] {
        let (_ep, _h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x00c0_ffee);
        let valid = {
            let mut p = request(MessageType::Confirmable, 2, 1, &[1, 2, 3], "/echo/a/b");
            p.add_option(CoapOption::UriQuery, b"ep=x".to_vec());
            p.add_option(CoapOption::Block1, vec![0x0e]);
            p.payload = vec![7; 40];
            p.to_bytes().unwrap()
        };
        for i in 0..10_000u32 {
            let dgram: Vec<u8> = match i % 3 {
                0 => {
                    let len = rng.gen_range(0..64);
                    (0..len).map(|_| rng.gen()).collect()
                }
                1 => valid[..rng.gen_range(0..valid.len())].to_vec(),
                _ => {
                    let mut d = valid.clone();
                    for _ in 0..3 {
                        let at = rng.gen_range(0..d.len());
                        d[at] = rng.gen();
                    }
                    d
                }
            };
            sock.send_to(&dgram, local).await.unwrap();
            if i % 200 == 0 {
                // Keep our receive buffer from overflowing with RSTs and answers.
                while recv(&sock, Duration::from_millis(1)).await.is_some() {}
            }
        }
        while recv(&sock, Duration::from_millis(50)).await.is_some() {}
        let probe = raw_socket(addr).await;
        probe.send_to(&get(0x7777, "/x"), local).await.unwrap();
        let (p, _) = recv_packet(&probe, WAIT)
            .await
            .expect("server still answers");
        assert_eq!(p.payload, b"hello");
    }
}

#[tokio::test]
async fn binds_ipv4_and_ipv6_on_the_same_port() {
    let handler = std::sync::Arc::new(TestHandler::default());
    // Find a port free on IPv4, then bind both families on it.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let addrs = [
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("[::1]:{port}").parse().unwrap(),
    ];
    let ep = coap_gateway::coap::Endpoint::bind(&addrs, fast_params(), handler)
        .await
        .unwrap();
    assert_eq!(ep.local_addrs().len(), 2);
    for local in ep.local_addrs() {
        let sock = raw_socket(if local.is_ipv4() { V4 } else { V6 }).await;
        sock.send_to(&get(1, "/x"), local).await.unwrap();
        let (p, from) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(from, local);
        assert_eq!(p.payload, b"hello");
    }
    ep.shutdown().await;
}

#[test]
fn packet_helpers_round_trip() {
    let p = Packet::from_bytes(&get(5, "/a/b")).unwrap();
    assert_eq!(p.header.message_id, 5);
}

#[tokio::test]
async fn duplicate_non_is_handled_once_and_not_answered_twice() {
    let (_ep, h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    let p = request(MessageType::NonConfirmable, 1, 31, &[1], "/count");
    let bytes = p.to_bytes().unwrap();
    sock.send_to(&bytes, local).await.unwrap();
    sock.send_to(&bytes, local).await.unwrap();
    let (r, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(r.payload, b"1");
    assert!(recv(&sock, Duration::from_millis(200)).await.is_none());
    assert_eq!(h.count_runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn oversized_datagram_con_is_rejected_and_the_server_keeps_serving() {
    let (_ep, _h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    let mut p = request(MessageType::Confirmable, 2, 0x0a0b, &[1], "/echo");
    p.payload = vec![0x55; 20_000];
    sock.send_to(&p.to_bytes_with_limit(65_000).unwrap(), local)
        .await
        .unwrap();
    let (bytes, _) = recv(&sock, WAIT).await.unwrap();
    // Linux reads datagrams in 8 KiB slots: a bigger one is rejected, not misread. Elsewhere
    // the whole body is read and echoed block-wise.
    if cfg!(target_os = "linux") {
        assert_eq!(bytes, vec![0x70, 0, 0x0a, 0x0b]);
    } else {
        assert_eq!(bytes[1], Code::CHANGED.0);
    }
    sock.send_to(&get(1, "/x"), local).await.unwrap();
    assert_eq!(recv_packet(&sock, WAIT).await.unwrap().0.payload, b"hello");
}

#[tokio::test]
async fn slow_handler_gets_empty_ack_then_a_separate_con_response() {
    for addr in [V4, V6] {
        // fast_params: ACK_TIMEOUT 100 ms, so the separate path starts after 50 ms.
        let (_ep, h, local) = start(addr).await;
        let sock = raw_socket(addr).await;
        let msg = get(0x0c0d, "/slower");
        sock.send_to(&msg, local).await.unwrap();
        let (ack, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(ack, vec![0x60, 0, 0x0c, 0x0d], "{addr}: empty ACK first");
        // A retransmission now gets the same empty ACK, and the handler is not re-run.
        sock.send_to(&msg, local).await.unwrap();
        let (ack2, _) = recv(&sock, WAIT).await.unwrap();
        assert_eq!(ack2, ack);
        let (resp, _) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(resp.header.get_type(), MessageType::Confirmable);
        assert_eq!(resp.get_token(), &[0xa, 0xb]);
        assert_eq!(resp.payload, b"slower");
        // Unacknowledged, it is retransmitted with the same MID.
        let (again, _) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(again.header.message_id, resp.header.message_id);
        let mid = resp.header.message_id.to_be_bytes();
        sock.send_to(&[0x60, 0, mid[0], mid[1]], local)
            .await
            .unwrap();
        // After our ACK nothing more arrives (allow one retransmission already in flight).
        tokio::time::sleep(Duration::from_millis(50)).await;
        while recv(&sock, Duration::from_millis(10)).await.is_some() {}
        assert!(
            recv(&sock, Duration::from_millis(500)).await.is_none(),
            "ACK stopped it"
        );
        assert_eq!(h.runs.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn bind_errors_are_typed() {
    let handler = std::sync::Arc::new(TestHandler::default());
    let err = coap_gateway::coap::Endpoint::bind(&[], fast_params(), handler.clone())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, coap_gateway::coap::CoapError::NoAddress));
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = coap_gateway::coap::Endpoint::bind(&[addr], fast_params(), handler)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn a_newer_notification_replaces_one_in_flight() {
    let (ep, h, local) = start(V6).await;
    let key = coap_gateway::coap::ObserveKey("obs".into());
    let sock = raw_socket(V6).await;
    let mut reg = request(MessageType::Confirmable, 1, 1, &[7, 7], "/obs");
    reg.add_option(CoapOption::Observe, vec![]);
    sock.send_to(&reg.to_bytes().unwrap(), local).await.unwrap();
    let (first, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert!(
        first.get_first_option(CoapOption::Observe).is_some(),
        "registered"
    );
    // Notification 1: not acknowledged.
    h.obs_value.store(1, Ordering::SeqCst);
    ep.server().notify(&key);
    let (n1, _) = recv_packet(&sock, WAIT).await.unwrap();
    assert_eq!(n1.payload, b"1");
    // Notification 2 replaces it.
    h.obs_value.store(2, Ordering::SeqCst);
    ep.server().notify(&key);
    let mut n2 = None;
    let t0 = std::time::Instant::now();
    while let Some((p, _)) = recv_packet(&sock, WAIT).await {
        if p.payload == b"2" {
            n2 = Some(p);
            break;
        }
        assert!(t0.elapsed() < WAIT);
    }
    let n2 = n2.expect("newer notification sent");
    let mid = n2.header.message_id.to_be_bytes();
    sock.send_to(&[0x60, 0, mid[0], mid[1]], local)
        .await
        .unwrap();
    // Notification 1 is no longer retransmitted, and its fate does not end the observation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    while recv(&sock, Duration::from_millis(10)).await.is_some() {}
    assert!(
        recv(&sock, Duration::from_millis(1500)).await.is_none(),
        "nothing retransmitted"
    );
    assert_eq!(ep.server().observer_count(&key), 1);
}

#[tokio::test]
async fn panicking_handlers_answer_5_00_and_the_server_keeps_serving() {
    let (_ep, _h, local) = start(V4).await;
    let sock = raw_socket(V4).await;
    for (mid, path) in [(1u16, "/panic"), (2, "/panic-later")] {
        sock.send_to(&get(mid, path), local).await.unwrap();
        let (p, _) = recv_packet(&sock, WAIT).await.unwrap();
        assert_eq!(code(&p), Code::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(p.header.message_id, mid);
    }
    sock.send_to(&get(3, "/x"), local).await.unwrap();
    assert_eq!(recv_packet(&sock, WAIT).await.unwrap().0.payload, b"hello");
}
