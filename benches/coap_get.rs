//! Throughput of trivial GETs served by the CoAP endpoint over loopback.
//!
//! `cargo bench --bench coap_get` starts an [`Endpoint`] with a trivial handler on
//! 127.0.0.1:0 in its own current-thread runtime (like actix-rt), drives it from a raw UDP
//! load loop (coap-lite-encoded CON GETs, K in flight, K = 16 and 64, 5 s each, a fresh source
//! socket every 30,000 requests so Message IDs never wrap within EXCHANGE_LIFETIME) and prints
//! one JSON line with requests per second.
//!
//! `cargo bench --bench coap_get -- --serve-only [--port P] [--seconds S]` only serves (for
//! an external load generator such as /work/shared/bench/coap_rd_load.py), for S seconds
//! (default 60).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coap_gateway::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, OutboundResponse, RequestHandler,
    TransmissionParams,
};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet};
use futures::FutureExt;

struct Trivial;

impl RequestHandler for Trivial {
    fn handle(&self, _req: InboundRequest) -> HandlerFuture {
        futures::future::ready(OutboundResponse::new(Code::CONTENT).with_payload(0, b"ok".to_vec()))
            .boxed()
    }
}

const MIDS_PER_SOCKET: u32 = 30_000;

/// Serve on its own thread; returns the bound address.
fn spawn_server(port: u16, seconds: u64) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let ep = Endpoint::bind(&[addr], TransmissionParams::default(), Arc::new(Trivial))
                .await
                .expect("bind");
            tx.send(ep.local_addrs()[0]).expect("report address");
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            ep.shutdown().await;
        });
    });
    rx.recv().expect("server address")
}

fn template() -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::from(1);
    p.set_token(vec![0, 0, 0, 0]);
    p.add_option(CoapOption::UriPath, b"x".to_vec());
    p.to_bytes().expect("encode")
}

/// K requests in flight against `server` for `duration`; returns completed requests/s.
fn load(server: SocketAddr, k: usize, duration: Duration) -> f64 {
    let tmpl = template();
    let mut buf = [0u8; 2048];
    let new_socket = || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind load socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        s
    };
    let mut sock = new_socket();
    let mut sent_on_socket = 0u32;
    let mut mid: u16 = 0;
    let mut completed = 0u64;
    let mut in_flight = 0usize;
    let start = Instant::now();
    let deadline = start + duration;
    let mut msg = tmpl.clone();
    while Instant::now() < deadline {
        if sent_on_socket >= MIDS_PER_SOCKET && in_flight == 0 {
            sock = new_socket();
            sent_on_socket = 0;
        }
        while in_flight < k && sent_on_socket < MIDS_PER_SOCKET {
            mid = mid.wrapping_add(1);
            msg[2..4].copy_from_slice(&mid.to_be_bytes());
            msg[4..8].copy_from_slice(&u32::from(mid).to_be_bytes());
            if sock.send_to(&msg, server).is_err() {
                break;
            }
            sent_on_socket += 1;
            in_flight += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) if n >= 2 && buf[1] == Code::CONTENT.0 => {
                completed += 1;
                in_flight -= 1;
            }
            Ok(_) => in_flight = in_flight.saturating_sub(1),
            // A lost datagram: forget the window and refill it.
            Err(_) => in_flight = 0,
        }
    }
    completed as f64 / start.elapsed().as_secs_f64()
}

fn arg_value(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-only") {
        let port = arg_value(&args, "--port").unwrap_or(0) as u16;
        let seconds = arg_value(&args, "--seconds").unwrap_or(60);
        let addr = spawn_server(port, seconds);
        println!("{{\"serving\":\"{addr}\",\"seconds\":{seconds}}}");
        std::thread::sleep(Duration::from_secs(seconds) + Duration::from_millis(200));
        return;
    }
    let seconds = arg_value(&args, "--seconds").unwrap_or(5);
    // `--target ADDR`: load an already running server instead of starting one.
    let server = match args.iter().position(|a| a == "--target") {
        Some(i) => args
            .get(i + 1)
            .and_then(|a| a.parse().ok())
            .expect("--target needs an address like 127.0.0.1:5683"),
        None => spawn_server(0, 4 * seconds + 10),
    };
    // Warm-up.
    load(server, 16, Duration::from_millis(500));
    let k16 = load(server, 16, Duration::from_secs(seconds));
    let k64 = load(server, 64, Duration::from_secs(seconds));
    println!(
        "{{\"bench\":\"coap_get\",\"seconds_each\":{seconds},\"k16_req_per_s\":{k16:.0},\"k64_req_per_s\":{k64:.0}}}"
    );
}
