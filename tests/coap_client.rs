//! Client side of the CoAP endpoint over real UDP on 127.0.0.1 and ::1: requests to our own
//! server and to the `coap` crate's server, ping, retransmission, separate responses, RST,
//! NON, Block1/Block2 and Observe.

#[path = "common/peers.rs"]
mod peers;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coap_gateway::coap::{
    ClientError, ClientRequest, Code, Method, ObserveKey, TransmissionParams,
};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use peers::*;

/// How long an awaited datagram or state change may take before it counts as missing.
const WAIT: Duration = Duration::from_secs(10);
/// Added to a budget the client must run out before failing: a bound that only a client which
/// overruns its budget by seconds (a defect, e.g. waiting for one more retransmission or the
/// whole exchange lifetime) can break. How close to the budget it stops is a benchmark's job.
const OVERRUN: Duration = Duration::from_secs(3);

#[tokio::test]
async fn client_gets_from_our_server_on_both_families() {
    for addr in [V4, V6] {
        let (server, _h, local) = start(addr).await;
        let (client_ep, _, _) = start(addr).await;
        let resp = client_ep
            .client()
            .request(local, ClientRequest::get("/x"))
            .await
            .unwrap();
        assert_eq!(resp.code, Code::CONTENT);
        assert_eq!(resp.payload, b"hello");
        assert_eq!(resp.content_format, Some(0));
        // The server can also be its own client (one socket serves and requests).
        let resp = server
            .client()
            .request(local, ClientRequest::get("/nope"))
            .await
            .unwrap();
        assert_eq!(resp.code, Code::NOT_FOUND);
    }
}

#[tokio::test]
async fn requests_leave_from_the_socket_of_the_peers_family() {
    let handler = std::sync::Arc::new(TestHandler::default());
    let ep = coap_gateway::coap::Endpoint::bind(
        &["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        fast_params(),
        handler,
    )
    .await
    .unwrap();
    let client = ep.client();
    for (addr, local) in [(V4, ep.local_addrs()[0]), (V6, ep.local_addrs()[1])] {
        let peer = raw_socket(addr).await;
        let peer_addr = peer.local_addr().unwrap();
        let c = client.clone();
        let task = tokio::spawn(async move {
            c.request(
                peer_addr,
                ClientRequest::get("/d").timeout(Duration::from_secs(2)),
            )
            .await
        });
        let (p, from) = recv_packet(&peer, WAIT).await.unwrap();
        assert_eq!(from, local, "sent from the endpoint's own {addr} socket");
        assert_eq!(p.get_token().len(), 8, "8-byte token");
        let mut resp = Packet::new();
        resp.header.set_type(MessageType::Acknowledgement);
        resp.header.code = MessageClass::from(0x45);
        resp.header.message_id = p.header.message_id;
        resp.set_token(p.get_token().to_vec());
        resp.payload = b"ok".to_vec();
        peer.send_to(&resp.to_bytes().unwrap(), from).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap().payload, b"ok");
    }
}

#[tokio::test]
async fn client_gets_from_the_coap_crate_device_including_block2() {
    for addr in [V4, V6] {
        let device = coap_crate_device(addr).await;
        let (ep, _h, _) = start(addr).await;
        let client = ep.client();
        let resp = client
            .request(device, ClientRequest::get("/hello"))
            .await
            .unwrap();
        assert_eq!(resp.payload, b"device says hi");
        let resp = client
            .request(device, ClientRequest::get("/big"))
            .await
            .unwrap();
        assert_eq!(resp.code, Code::CONTENT);
        assert!(
            resp.payload == pattern(10 * 1024),
            "{addr}: 10 KiB reassembled"
        );
    }
}

#[tokio::test]
async fn client_reassembles_block2_from_our_server() {
    for addr in [V4, V6] {
        let (_server, _h, local) = start(addr).await;
        let (ep, _, _) = start(addr).await;
        let resp = ep
            .client()
            .request(local, ClientRequest::get("/big"))
            .await
            .unwrap();
        assert!(resp.payload == pattern(10 * 1024));
        assert_eq!(resp.etag, Some(vec![1, 2]));
    }
}

#[tokio::test]
async fn client_uploads_with_block1_and_reads_the_block2_echo() {
    for addr in [V4, V6] {
        let (_server, _h, local) = start(addr).await;
        let (ep, _, _) = start(addr).await;
        let body = pattern(5000);
        let req = ClientRequest::new(Method::Post, "/echo").payload(Some(42), body.clone());
        let resp = ep.client().request(local, req).await.unwrap();
        assert_eq!(resp.code, Code::CHANGED);
        assert!(
            resp.payload == body,
            "5000 bytes up via Block1 and back via Block2"
        );
    }
}

#[tokio::test]
async fn ping_to_our_server_is_alive() {
    for addr in [V4, V6] {
        let (_server, _h, local) = start(addr).await;
        let (ep, _, _) = start(addr).await;
        let budget = Duration::from_secs(10);
        let rtt = ep
            .client()
            .ping(local, budget)
            .await
            .unwrap_or_else(|e| panic!("{addr}: our server did not answer the ping: {e:?}"));
        assert!(rtt <= budget, "{addr}: {rtt:?}");
    }
}

#[tokio::test]
async fn ping_to_a_silent_socket_times_out_after_the_budget_with_retransmissions() {
    for addr in [V4, V6] {
        let silent = raw_socket(addr).await;
        let target = silent.local_addr().unwrap();
        let (ep, _, _) = start(addr).await;
        let budget = Duration::from_millis(700);
        let t0 = Instant::now();
        let err = ep.client().ping(target, budget).await.unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(err, ClientError::Timeout), "{err:?}");
        // It waited out its whole budget, and stopped (not hung on, e.g., for the exchange).
        assert!(took >= budget, "gave up early: {took:?}");
        assert!(took < budget + OVERRUN, "overran its budget: {took:?}");
        // ACK_TIMEOUT 100 ms doubling within 700 ms: the first send plus retransmissions (up
        // to 3 fit; at least one retransmission however late the timers fire).
        let mut mids = Vec::new();
        while let Some((bytes, _)) = recv(&silent, Duration::from_millis(10)).await {
            assert_eq!(bytes.len(), 4, "empty CON");
            assert_eq!(bytes[0], 0x40);
            mids.push(u16::from_be_bytes([bytes[2], bytes[3]]));
        }
        assert!(mids.len() >= 2, "retransmitted: {mids:?}");
        assert!(mids.iter().all(|m| *m == mids[0]), "same MID each time");
    }
}

/// A GET to `target` that holds its NSTART slot (the peer must not answer it) for `budget`.
fn hold_slot(
    client: &coap_gateway::coap::CoapClient,
    target: std::net::SocketAddr,
    budget: Duration,
) -> tokio::task::JoinHandle<Result<coap_gateway::coap::ClientResponse, ClientError>> {
    let c = client.clone();
    tokio::spawn(async move {
        c.request(target, ClientRequest::get("/slow").timeout(budget))
            .await
    })
}

/// NSTART is 1: while a request to a peer is outstanding, a ping to it cannot be sent. If the
/// peer stays silent for the ping's whole budget the ping says so (`answered_meanwhile: false`),
/// and the peer never sees an empty CON: only the request's retransmissions.
#[tokio::test]
async fn ping_behind_an_unanswered_request_reports_a_silent_busy_peer() {
    let silent = raw_socket(V4).await;
    let target = silent.local_addr().unwrap();
    let (ep, _, _) = start(V4).await;
    let client = ep.client();
    let holder = hold_slot(&client, target, Duration::from_secs(3));
    // The request goes out first and holds the peer's slot.
    let (first, _) = recv_packet(&silent, WAIT).await.expect("the request");
    assert_eq!(code(&first), Code::GET);
    let err = client
        .ping(target, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::PeerBusy {
                answered_meanwhile: false
            }
        ),
        "{err:?}"
    );
    while let Some((p, _)) = recv_packet(&silent, Duration::from_millis(10)).await {
        assert_eq!(
            code(&p),
            Code::GET,
            "only the request's retransmissions, no ping"
        );
    }
    holder.abort();
}

/// A request the peer has acknowledged (its answer will come separately: a device working on
/// a command) is no longer outstanding (RFC 7252 §4.7), so a ping goes out at once instead of
/// waiting behind it, and the device's own answer decides: a device busy with a slow command
/// is not taken for a silent one.
#[tokio::test]
async fn ping_behind_an_acknowledged_request_goes_out_and_is_answered() {
    let device = raw_socket(V4).await;
    let target = device.local_addr().unwrap();
    let (ep, _, _) = start(V4).await;
    let client = ep.client();
    let holder = hold_slot(&client, target, Duration::from_secs(20));
    let (req, from) = recv_packet(&device, WAIT).await.expect("the request");
    device
        .send_to(
            &empty(MessageType::Acknowledgement, req.header.message_id),
            from,
        )
        .await
        .unwrap();
    // The ACK is in before the ping starts: the case a slow command creates.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ping = {
        let c = client.clone();
        tokio::spawn(async move { c.ping(target, Duration::from_secs(3)).await })
    };
    let (ping_msg, from) = recv_packet(&device, WAIT).await.expect("the ping");
    assert_eq!(
        code(&ping_msg),
        Code::EMPTY,
        "a ping, not a retransmitted request"
    );
    assert_eq!(ping_msg.header.get_type(), MessageType::Confirmable);
    device
        .send_to(&empty(MessageType::Reset, ping_msg.header.message_id), from)
        .await
        .unwrap();
    let answered = ping.await.unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    assert!(
        !holder.is_finished(),
        "the request still waits for its answer"
    );
    holder.abort();
}

/// A stray datagram from the peer's address that matches none of our exchanges (a spoofer
/// trying to keep a dead device "alive") does not count as an answer.
#[tokio::test]
async fn an_unmatched_datagram_from_a_busy_peer_is_not_an_answer() {
    let device = raw_socket(V4).await;
    let target = device.local_addr().unwrap();
    let (ep, _, local) = start(V4).await;
    let client = ep.client();
    let holder = hold_slot(&client, target, Duration::from_secs(3));
    let (req, _) = recv_packet(&device, WAIT).await.expect("the request");
    let ping = {
        let c = client.clone();
        tokio::spawn(async move { c.ping(target, Duration::from_millis(600)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    device
        .send_to(
            &empty(
                MessageType::Acknowledgement,
                req.header.message_id.wrapping_add(7),
            ),
            local,
        )
        .await
        .unwrap();
    let err = ping.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::PeerBusy {
                answered_meanwhile: false
            }
        ),
        "{err:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn con_request_is_retransmitted_max_retransmit_times_then_fails() {
    let silent = raw_socket(V4).await;
    let target = silent.local_addr().unwrap();
    let params = TransmissionParams {
        ack_timeout: Duration::from_millis(50),
        ack_random_factor: 1.0,
        max_retransmit: 3,
        ..TransmissionParams::default()
    };
    let (ep, _, _) = start_with(V4, params).await;
    let t0 = Instant::now();
    let err = ep
        .client()
        .request(target, ClientRequest::get("/x"))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    // The whole schedule ran: 50 + 100 + 200 + 400 ms, and then it stopped.
    let schedule = Duration::from_millis(750);
    assert!(took >= schedule, "gave up early: {took:?}");
    assert!(took < schedule + OVERRUN, "overran the schedule: {took:?}");
    let mut copies = Vec::new();
    while let Some((bytes, _)) = recv(&silent, Duration::from_millis(10)).await {
        copies.push(bytes);
    }
    assert_eq!(copies.len(), 4, "1 + MAX_RETRANSMIT");
    assert!(
        copies.iter().all(|c| *c == copies[0]),
        "identical retransmissions"
    );
}

#[tokio::test]
async fn separate_response_is_acked_and_returned() {
    for addr in [V4, V6] {
        let peer = raw_socket(addr).await;
        let target = peer.local_addr().unwrap();
        let (ep, _, _) = start(addr).await;
        let client = ep.client();
        let task = tokio::spawn(async move {
            client
                .request(
                    target,
                    ClientRequest::get("/sep").timeout(Duration::from_secs(3)),
                )
                .await
        });
        let (req, from) = recv_packet(&peer, WAIT).await.unwrap();
        // Empty ACK now...
        let ack = [
            0x60,
            0,
            (req.header.message_id >> 8) as u8,
            req.header.message_id as u8,
        ];
        peer.send_to(&ack, from).await.unwrap();
        // ...the response later, as a CON of its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            recv(&peer, Duration::from_millis(1)).await.is_none(),
            "no retransmission after the empty ACK"
        );
        let mut resp = Packet::new();
        resp.header.set_type(MessageType::Confirmable);
        resp.header.code = MessageClass::from(0x45);
        resp.header.message_id = 0x5151;
        resp.set_token(req.get_token().to_vec());
        resp.payload = b"later".to_vec();
        peer.send_to(&resp.to_bytes().unwrap(), from).await.unwrap();
        let (ack, _) = recv(&peer, WAIT)
            .await
            .expect("our client ACKs the CON response");
        assert_eq!(ack, vec![0x60, 0, 0x51, 0x51]);
        let got = task.await.unwrap().unwrap();
        assert_eq!(got.payload, b"later");
        // A retransmission of that CON response is ACKed again, not RST.
        peer.send_to(&resp.to_bytes().unwrap(), from).await.unwrap();
        let (ack2, _) = recv(&peer, WAIT).await.unwrap();
        assert_eq!(ack2, vec![0x60, 0, 0x51, 0x51]);
    }
}

#[tokio::test]
async fn rst_fails_the_request_at_once() {
    for addr in [V4, V6] {
        let peer = raw_socket(addr).await;
        let target = peer.local_addr().unwrap();
        // The first retransmission would come after ACK_TIMEOUT: 20 s here, so an answer
        // well before it (and no second copy of the request) can only come from the RST.
        let ack_timeout = Duration::from_secs(20);
        let params = TransmissionParams {
            ack_timeout,
            ack_random_factor: 1.0,
            ..TransmissionParams::default()
        };
        let (ep, _, _) = start_with(addr, params).await;
        let client = ep.client();
        let t0 = Instant::now();
        let task =
            tokio::spawn(async move { client.request(target, ClientRequest::get("/r")).await });
        let (req, from) = recv_packet(&peer, WAIT).await.unwrap();
        let rst = [
            0x70,
            0,
            (req.header.message_id >> 8) as u8,
            req.header.message_id as u8,
        ];
        peer.send_to(&rst, from).await.unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, ClientError::Reset), "{err:?}");
        assert!(t0.elapsed() < ack_timeout, "no retransmission wait");
        assert!(
            recv(&peer, Duration::from_millis(10)).await.is_none(),
            "no retransmission after the RST"
        );
    }
}

#[tokio::test]
async fn unsolicited_con_response_gets_rst() {
    let (ep, _, local) = start(V4).await;
    let peer = raw_socket(V4).await;
    let mut resp = Packet::new();
    resp.header.set_type(MessageType::Confirmable);
    resp.header.code = MessageClass::from(0x45);
    resp.header.message_id = 0x0102;
    resp.set_token(vec![9; 8]);
    peer.send_to(&resp.to_bytes().unwrap(), local)
        .await
        .unwrap();
    let (bytes, _) = recv(&peer, WAIT).await.unwrap();
    assert_eq!(bytes, vec![0x70, 0, 1, 2]);
    drop(ep);
}

#[tokio::test]
async fn non_request_gets_its_non_response() {
    let (_server, _h, local) = start(V6).await;
    let (ep, _, _) = start(V6).await;
    let resp = ep
        .client()
        .request(
            local,
            ClientRequest::get("/x").non_confirmable().timeout(WAIT),
        )
        .await
        .unwrap();
    assert_eq!(resp.payload, b"hello");
}

#[tokio::test]
async fn observe_our_server_three_notifications_then_cancel() {
    for addr in [V4, V6] {
        let (server, h, local) = start(addr).await;
        let (ep, _, _) = start(addr).await;
        let key = ObserveKey("obs".into());
        let mut obs = ep
            .client()
            .observe(local, ClientRequest::get("/obs"))
            .await
            .unwrap();
        assert_eq!(obs.first.payload, b"0");
        let first_seq = obs.first.observe.expect("registered");
        assert_eq!(server.server().observer_count(&key), 1);
        let mut last = first_seq;
        for i in 1..=3 {
            h.obs_value.store(i, Ordering::SeqCst);
            server.server().notify(&key);
            let n = tokio::time::timeout(WAIT, obs.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(n.payload, i.to_string().as_bytes());
            let seq = n.observe.unwrap();
            assert!(seq > last, "increasing sequence");
            last = seq;
        }
        obs.cancel().await;
        assert_eq!(
            server.server().observer_count(&key),
            0,
            "{addr}: deregistered"
        );
    }
}

#[tokio::test]
async fn dropped_observation_answers_the_next_notification_with_rst() {
    let (server, h, local) = start(V4).await;
    let (ep, _, _) = start(V4).await;
    let key = ObserveKey("obs".into());
    let obs = ep
        .client()
        .observe(local, ClientRequest::get("/obs"))
        .await
        .unwrap();
    assert_eq!(server.server().observer_count(&key), 1);
    drop(obs);
    h.obs_value.store(5, Ordering::SeqCst);
    server.server().notify(&key);
    let t0 = Instant::now();
    while server.server().observer_count(&key) > 0 {
        assert!(t0.elapsed() < WAIT, "RST should remove the observer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reordered_notifications_are_dropped() {
    // A raw device: answers the registration, then sends notifications 5, 3 (stale), 6.
    let device = raw_socket(V6).await;
    let target = device.local_addr().unwrap();
    let (ep, _, _) = start(V6).await;
    let client = ep.client();
    let task = tokio::spawn(async move { client.observe(target, ClientRequest::get("/t")).await });
    let (req, from) = recv_packet(&device, WAIT).await.unwrap();
    assert_eq!(
        req.get_first_option(CoapOption::Observe),
        Some(&vec![]),
        "Observe=0"
    );
    let token = req.get_token().to_vec();
    let notification = |mtype, mid: u16, seq: u8, body: &[u8]| {
        let mut p = Packet::new();
        p.header.set_type(mtype);
        p.header.code = MessageClass::from(0x45);
        p.header.message_id = mid;
        p.set_token(token.clone());
        p.add_option(CoapOption::Observe, vec![seq]);
        p.payload = body.to_vec();
        p.to_bytes().unwrap()
    };
    device
        .send_to(
            &notification(MessageType::Acknowledgement, req.header.message_id, 2, b"a"),
            from,
        )
        .await
        .unwrap();
    let mut obs = task.await.unwrap().unwrap();
    assert_eq!(obs.first.payload, b"a");
    for (mid, seq, body) in [(10u16, 5u8, b"b"), (11, 3, b"x"), (12, 6, b"c")] {
        device
            .send_to(
                &notification(MessageType::Confirmable, mid, seq, body),
                from,
            )
            .await
            .unwrap();
        let (ack, _) = recv(&device, WAIT).await.unwrap();
        assert_eq!(
            ack,
            vec![0x60, 0, 0, mid as u8],
            "every CON notification is ACKed"
        );
    }
    let n1 = tokio::time::timeout(WAIT, obs.next())
        .await
        .unwrap()
        .unwrap();
    let n2 = tokio::time::timeout(WAIT, obs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (n1.payload.as_slice(), n2.payload.as_slice()),
        (&b"b"[..], &b"c"[..])
    );
}

#[tokio::test]
async fn nstart_one_serialises_requests_to_a_peer() {
    let peer = raw_socket(V4).await;
    let target = peer.local_addr().unwrap();
    let (ep, _, _) = start(V4).await;
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let c = ep.client();
        tasks.push(tokio::spawn(async move {
            c.request(
                target,
                ClientRequest::get("/n").timeout(Duration::from_secs(3)),
            )
            .await
        }));
    }
    let (first, from) = recv_packet(&peer, WAIT).await.unwrap();
    // With NSTART = 1 the second request waits; only retransmissions of the first may come.
    while let Some((p, _)) = recv_packet(&peer, Duration::from_millis(150)).await {
        assert_eq!(p.get_token(), first.get_token(), "second request held back");
    }
    let answer = |p: &Packet| {
        let mut r = Packet::new();
        r.header.set_type(MessageType::Acknowledgement);
        r.header.code = MessageClass::from(0x45);
        r.header.message_id = p.header.message_id;
        r.set_token(p.get_token().to_vec());
        r.to_bytes().unwrap()
    };
    peer.send_to(&answer(&first), from).await.unwrap();
    // A retransmission of the first request may still be queued behind our answer.
    let second = loop {
        let (p, _) = recv_packet(&peer, WAIT).await.unwrap();
        if p.get_token() != first.get_token() {
            break p;
        }
    };
    peer.send_to(&answer(&second), from).await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().code, Code::CONTENT);
    }
}

#[tokio::test]
async fn max_in_flight_bounds_outstanding_requests() {
    let silent = raw_socket(V4).await;
    let target = silent.local_addr().unwrap();
    let params = TransmissionParams {
        max_in_flight: 1,
        ..fast_params()
    };
    let (ep, _, _) = start_with(V4, params).await;
    let c1 = ep.client();
    let first = tokio::spawn(async move {
        c1.request(
            target,
            ClientRequest::get("/a").timeout(Duration::from_secs(2)),
        )
        .await
    });
    recv(&silent, WAIT).await.expect("first request sent");
    let other = raw_socket(V4).await.local_addr().unwrap();
    let err = ep
        .client()
        .request(
            other,
            ClientRequest::get("/b").timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Overloaded), "{err:?}");
    first.abort();
}

#[tokio::test]
async fn response_with_unknown_critical_option_is_rejected() {
    let peer = raw_socket(V6).await;
    let target = peer.local_addr().unwrap();
    let (ep, _, _) = start(V6).await;
    let client = ep.client();
    let task = tokio::spawn(async move { client.request(target, ClientRequest::get("/c")).await });
    let (req, from) = recv_packet(&peer, WAIT).await.unwrap();
    // A separate CON response carrying critical option 65001: the client must RST it.
    let mut resp = Packet::new();
    resp.header.set_type(MessageType::Confirmable);
    resp.header.code = MessageClass::from(0x45);
    resp.header.message_id = 0x0909;
    resp.set_token(req.get_token().to_vec());
    resp.add_option(CoapOption::Unknown(65001), vec![1]);
    peer.send_to(&resp.to_bytes().unwrap(), from).await.unwrap();
    let (bytes, _) = recv(&peer, WAIT).await.unwrap();
    assert_eq!(
        bytes,
        vec![0x70, 0, 0x09, 0x09],
        "RST for the unacceptable response"
    );
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn shutdown_cancels_pending_requests() {
    let silent = raw_socket(V4).await;
    let target = silent.local_addr().unwrap();
    let (ep, _, _) = start(V4).await;
    let client = ep.client();
    let task = tokio::spawn(async move {
        client
            .request(
                target,
                ClientRequest::get("/s").timeout(Duration::from_secs(60)),
            )
            .await
    });
    recv(&silent, WAIT).await.expect("request sent");
    let t0 = Instant::now();
    ep.shutdown().await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Cancelled), "{err:?}");
    // Far less than the request's 60 s: shutdown ended it, not its own timeout.
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn block_wise_notifications_are_reassembled() {
    let (server, h, local) = start(V4).await;
    let (ep, _, _) = start(V4).await;
    let key = ObserveKey("bigobs".into());
    let mut obs = ep
        .client()
        .observe(local, ClientRequest::get("/bigobs"))
        .await
        .unwrap();
    assert!(obs.first.payload == pattern(3000));
    for i in 1..=3 {
        h.obs_value.store(i, Ordering::SeqCst);
        server.server().notify(&key);
        let n = tokio::time::timeout(WAIT, obs.next())
            .await
            .unwrap()
            .unwrap();
        assert!(n.payload == pattern(3000 + i), "notification {i} whole");
        assert!(n.observe.is_some());
    }
    obs.cancel().await;
    assert_eq!(server.server().observer_count(&key), 0);
}
