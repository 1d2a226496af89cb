//! Flood test (issue 11): one source (127.0.0.2, two sockets) floods the real gateway for 5 s
//! at up to 50,000 datagrams/s — garbage, valid registrations, CON and NON lookups — while a
//! well-behaved source (127.0.0.1) registers 200 endpoints with the test client. Every
//! well-behaved registration must get 2.01 and be in a lookup afterwards; the flooder must have
//! been rate limited (answered at most the burst plus the rate, a few 4.29, the rest dropped).
//! The well-behaved latency is printed, never asserted (figures: benches/rd_flood.rs).

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::coap_peer::{lookup, Peer};
use common::{Gateway, GatewayOptions};
use device_sim::flood::flood_datagram;

const FLOOD_FOR: Duration = Duration::from_secs(5);
const FLOOD_RATE: u64 = 50_000;
const WELL_BEHAVED: usize = 200;
const RATE: u64 = 200;
const BURST: u64 = 1_000;

fn start() -> (Gateway, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let opts = GatewayOptions {
        listen: vec!["127.0.0.1:0".into()],
        extra_yaml: format!(
            "pinger:\n  enabled: false\nlimits:\n  exempt_loopback: false\n  \
             request_rate_per_s: {RATE}\n  request_burst: {BURST}\n"
        ),
        data_dir: Some(data.clone()),
    };
    let path = common::write_config(tmp.path(), &data, &opts);
    (Gateway::spawn(&path, data, 1), tmp)
}

#[derive(Default)]
struct FloodCounts {
    sent: AtomicU64,
    answered: AtomicU64,
    /// Requests answered at all (distinct tokens; a separate response to a flooder that never
    /// ACKs is retransmitted, so datagrams overcount admissions).
    distinct: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
    too_many: AtomicU64,
    created: AtomicU64,
}

#[test]
fn a_flooding_source_is_rate_limited_and_a_well_behaved_one_is_served() {
    let (gw, _tmp) = start();
    let rd = gw.addr();
    let counts = Arc::new(FloodCounts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.2:0").unwrap())
        .collect();
    let receivers: Vec<_> = sockets
        .iter()
        .map(|s| {
            let sock = s.try_clone().unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let (counts, stop) = (counts.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                let end = Instant::now() + FLOOD_FOR + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let Ok((n, _)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    counts.answered.fetch_add(1, Ordering::Relaxed);
                    let tkl = usize::from(buf[0] & 0x0f);
                    let key = match buf.get(4..4 + tkl) {
                        Some(t) if tkl > 0 => t.to_vec(),
                        _ => vec![0xff, buf[2], buf[3]],
                    };
                    counts.distinct.lock().unwrap().insert(key);
                    match buf.get(1).copied() {
                        Some(0x9d) => counts.too_many.fetch_add(1, Ordering::Relaxed),
                        Some(0x41) => counts.created.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                    let _ = n;
                }
            })
        })
        .collect();
    let flooder = {
        let counts = counts.clone();
        thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let start = Instant::now();
            let mut i = 0u64;
            // Paced in 1 ms slices; bounded by time and by count.
            while start.elapsed() < FLOOD_FOR && i < FLOOD_RATE * FLOOD_FOR.as_secs() {
                let due = (start.elapsed().as_secs_f64() * FLOOD_RATE as f64) as u64;
                while i < due {
                    let bytes = flood_datagram(i, &mut rng);
                    let _ = sockets[(i % 2) as usize].send_to(&bytes, rd);
                    i += 1;
                }
                thread::sleep(Duration::from_millis(1));
            }
            counts.sent.store(i, Ordering::Relaxed);
            start.elapsed()
        })
    };

    // The well-behaved source, while the flood runs.
    thread::sleep(Duration::from_millis(300));
    let good = Peer::with_socket(UdpSocket::bind("127.0.0.1:0").unwrap(), rd);
    let mut latencies = Vec::with_capacity(WELL_BEHAVED);
    for n in 0..WELL_BEHAVED {
        let t0 = Instant::now();
        let resp = good.post_links(
            &format!("/rd?ep=good-{n}&et=well-behaved"),
            "</sensors/temp>;rt=\"temperature\"",
        );
        latencies.push(t0.elapsed());
        assert_eq!(resp.code, "2.01", "good-{n}: {}", resp.text());
    }
    let flood_took = flooder.join().unwrap();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        r.join().unwrap();
    }

    let eps = lookup(&good, "/rd-lookup/ep?et=well-behaved");
    assert_eq!(
        eps.len(),
        WELL_BEHAVED,
        "every well-behaved registration is stored"
    );

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let sent = counts.sent.load(Ordering::Relaxed);
    let answered = counts.answered.load(Ordering::Relaxed);
    let too_many = counts.too_many.load(Ordering::Relaxed);
    let created = counts.created.load(Ordering::Relaxed);
    let distinct = counts.distinct.lock().unwrap().len() as u64;
    println!(
        "flood: {sent} datagrams in {flood_took:?} ({:.0}/s); flooder answered {answered} \
         ({distinct} distinct requests, {created} 2.01, {too_many} 4.29), unanswered {}; well-behaved {WELL_BEHAVED} x 2.01, \
         p50 {:?}, p99 {:?}, max {:?}",
        sent as f64 / flood_took.as_secs_f64(),
        sent - distinct.min(sent),
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1],
    );
    // Rate limited: the bucket admits at most its burst plus the rate over the flood (the
    // garbage quarter is never answered; 4.29s come at most once a second).
    let admitted_bound = BURST + RATE * (flood_took.as_secs() + 2);
    assert!(
        distinct - too_many <= admitted_bound,
        "{distinct} requests answered ({too_many} 4.29) > {admitted_bound}"
    );
    assert!(too_many >= 1, "the flooder saw 4.29");
    assert!(
        too_many <= flood_took.as_secs() + 2,
        "one 4.29 per second at most"
    );
    assert!(sent > 10 * distinct, "most of the flood was dropped");
    assert!(gw.wait_for_log("rate limit", Duration::from_secs(2)));
}
