//! Our server observed by an independent client (the `coap` crate), and the endpoint running
//! inside an actix System (actix-rt's current-thread runtime and LocalSet).

#[path = "common/peers.rs"]
mod peers;

use std::sync::atomic::Ordering;
use std::time::Duration;

use coap_gateway::coap::{ClientRequest, ObserveKey};
use peers::*;

const WAIT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn coap_crate_client_observes_our_server_and_cancels() {
    for addr in [V4, V6] {
        let (server, h, local) = start(addr).await;
        let key = ObserveKey("obs".into());
        let client = coap::UdpCoAPClient::new(local).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = client
            .observe("/obs", move |msg| {
                if let Ok(m) = msg {
                    let _ = tx.send(m.payload);
                }
            })
            .await
            .unwrap();
        let first = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, b"0");
        assert_eq!(server.server().observer_count(&key), 1, "{addr}");
        for i in 1..=3usize {
            h.obs_value.store(i, Ordering::SeqCst);
            server.server().notify(&key);
            let got = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, i.to_string().into_bytes(), "{addr}");
        }
        stop.send(coap::client::ObserveMessage::Terminate).unwrap();
        let t0 = std::time::Instant::now();
        while server.server().observer_count(&key) > 0 {
            assert!(
                t0.elapsed() < WAIT,
                "{addr}: deregistration (Observe=1) removes the observer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[actix_rt::test]
async fn endpoint_works_inside_an_actix_system() {
    let (_server, _h, local) = start(V4).await;
    let (ep, _, _) = start(V4).await;
    let client = ep.client();
    // `/slow` takes the spawned-handler path; `/big` the Block2 path.
    let slow = client
        .request(local, ClientRequest::get("/slow"))
        .await
        .unwrap();
    assert_eq!(slow.payload, b"slow");
    let big = client
        .request(local, ClientRequest::get("/big"))
        .await
        .unwrap();
    assert_eq!(big.payload.len(), 10 * 1024);
    let rtt = client.ping(local, Duration::from_secs(1)).await.unwrap();
    assert!(rtt < Duration::from_secs(1));
    // From an actor's context too: a future spawned on the System's arbiter.
    let c2 = client.clone();
    let handle = actix_rt::spawn(async move { c2.request(local, ClientRequest::get("/x")).await });
    assert_eq!(handle.await.unwrap().unwrap().payload, b"hello");
}
