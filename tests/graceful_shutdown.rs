//! Graceful shutdown on SIGTERM and SIGINT (issue 11), with the real gateway, platform-sim, a
//! test-owned observable device and a lookup observer, while registrations keep arriving:
//!
//! - the process exits with code 0 within the budget;
//! - the platform link ends with a WebSocket Close frame (platform-sim logs "gateway closed");
//! - "cleanly" for observations (RFC 7641): the Observer deregisters each device observation
//!   with a GET carrying Observe=1 (§3.6), which the device sees; every RD lookup observer gets
//!   a final 5.03 Service Unavailable with Max-Age (an error response ends an observation,
//!   §4.2; Max-Age says when to retry, RFC 7252 §5.9.3.4) instead of silently being forgotten;
//! - data written around the signal is either acknowledged and durable or not acknowledged:
//!   every 2.01 a client received is in the store afterwards (`rd-dump`), and requests after
//!   the signal get 5.03 or no answer, never a 2.01 for something not stored.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::raw_device::RawDevice;
use common::rd_dump::{link_records, stored_registrations};
use common::{Gateway, GatewayOptions};

/// Exit budget: the shutdown's own bounds (RD drain 2 s, deregistrations 2 s, platform close
/// 3 s) plus margin; a healthy stop takes well under 2 s.
const EXIT_BUDGET: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct LoadOutcome {
    /// (ep, links) of every registration answered 2.01.
    acknowledged: Vec<(String, String)>,
    /// 5.03 (the RD was draining) and 4.29 answers.
    refused: usize,
    /// (Max-Age, diagnostic) of every 5.03 answer, in order.
    unavailable: Vec<(Option<u32>, String)>,
}

fn register_until_gone(addr: std::net::SocketAddr, out: Arc<Mutex<LoadOutcome>>) {
    let peer = Peer::new(addr).with_budget(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let ep = format!("gs-{i}");
        let links = format!("</s/{i}>;rt=\"load\"");
        match peer.try_request(&Req::post(&format!("/rd?ep={ep}&lt=3600")).links(&links)) {
            Ok(r) if r.code == "2.01" => out.lock().unwrap().acknowledged.push((ep, links)),
            // 5.03: the RD is draining; 4.29: a rate limit (RFC 8516). Neither writes.
            Ok(r) if r.code == "5.03" || r.code == "4.29" => {
                let mut o = out.lock().unwrap();
                o.refused += 1;
                if r.code == "5.03" {
                    o.unavailable.push((r.max_age, r.text()));
                }
                drop(o);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(r) => panic!("registration answered {} {}", r.code, r.text()),
            Err(_) => break,
        }
    }
}

fn graceful_stop(signal: &str) {
    let platform = PlatformSim::start("127.0.0.1:0", Some("shutdown-token-5e1f"));
    let mut gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  token: shutdown-token-5e1f\n  reconnect_max_s: 1\nobserver:\n  enabled: true\n",
            platform.url()
        ),
        ..GatewayOptions::default()
    });
    assert!(
        platform.wait_stderr("gateway connected", WAIT),
        "the link never came up"
    );

    // A device the Observer observes, and a client observing a lookup.
    let device = RawDevice::start();
    let p = Peer::new(gw.addr());
    register(
        &p,
        &format!("ep=gs-device&base=coap://{}", device.addr),
        "</temp>;obs",
    );
    assert!(
        platform
            .wait_for(WAIT, |f| f["type"] == "data" && f["ep"] == "gs-device")
            .is_some(),
        "the device's observation never produced data"
    );
    let watcher = Peer::new(gw.addr());
    let (token, first) = watcher.observe("/rd-lookup/res?ep=gs-device");
    assert_eq!(first.code, "2.05");
    assert!(
        first.observe.is_some(),
        "lookup observation not established"
    );
    let last_notification = std::thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(n) = watcher.wait_notification(&token, Duration::from_millis(200)) {
                if n.code != "2.05" {
                    return Some(n);
                }
            }
        }
        None
    });

    // Registrations keep coming while the signal arrives.
    let load = Arc::new(Mutex::new(LoadOutcome::default()));
    let addr = gw.addr();
    let worker = {
        let load = load.clone();
        std::thread::spawn(move || register_until_gone(addr, load))
    };
    // The signal arrives while registrations are being acknowledged (an event, not a sleep).
    let deadline = Instant::now() + WAIT;
    while load.lock().unwrap().acknowledged.len() < 5 {
        assert!(Instant::now() < deadline, "the load never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before_signal = load.lock().unwrap().acknowledged.len();
    let (code, took) = gw
        .signal_and_wait(signal, EXIT_BUDGET)
        .unwrap_or_else(|| panic!("no exit within {EXIT_BUDGET:?} of SIG{signal}"));
    worker.join().expect("load thread");
    eprintln!("SIG{signal}: exit code {code:?} after {took:?}");
    assert_eq!(code, Some(0), "SIG{signal} must be a clean exit");
    let log = gw.log_text();
    assert!(log.contains(&format!("SIG{signal} received")), "{log}");
    assert!(
        log.contains("gateway stopped"),
        "the shutdown did not finish: {log}"
    );

    // Platform link: our Close frame reached platform-sim.
    assert!(
        platform.wait_stderr("gateway closed", Duration::from_secs(5)),
        "platform-sim saw no Close frame: {:?}",
        platform.stderr_lines()
    );
    // Device observation: deregistered with GET Observe=1 (RFC 7641 §3.6).
    assert_eq!(
        device.deregistrations.load(Ordering::Relaxed),
        1,
        "the device saw no deregistration (resets: {})",
        device.resets.load(Ordering::Relaxed)
    );
    // Lookup observer: a final 5.03 with Max-Age, without Observe (it ends the observation).
    let last = last_notification
        .join()
        .expect("watcher thread")
        .expect("the lookup observer got no final notification");
    assert_eq!(last.code, "5.03", "{}", last.text());
    // Max-Age 10: about how long a restart takes (`rd::drain::RETRY_AFTER_S`), so the observer
    // comes back when the gateway is up again rather than at the 60 s default (RFC 7252 §5.10.5).
    assert_eq!(last.max_age, Some(10), "the final 5.03's Max-Age");
    assert_eq!(
        last.observe, None,
        "a final notification carries no Observe"
    );

    // Acknowledged = durable; after the signal only refusals or silence.
    let load = load.lock().unwrap();
    let stored = stored_registrations(&gw.data_dir);
    let lost: Vec<&String> = load
        .acknowledged
        .iter()
        .filter(|(ep, links)| {
            stored
                .get(ep)
                .is_none_or(|r| r.links != link_records(links))
        })
        .map(|(ep, _)| ep)
        .collect();
    eprintln!(
        "SIG{signal}: {} registrations acknowledged ({before_signal} before the signal), {} refused ({} with 5.03), {} stored, lost {}",
        load.acknowledged.len(),
        load.refused,
        load.unavailable.len(),
        stored.len(),
        lost.len()
    );
    assert!(before_signal > 0, "the load never got going");
    // Every 5.03 the registering client got is the drain's: Max-Age 10, "shutting down".
    for (max_age, diagnostic) in &load.unavailable {
        assert_eq!(*max_age, Some(10), "a 5.03 while draining ({diagnostic:?})");
        assert!(diagnostic.contains("shutting down"), "{diagnostic:?}");
    }
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(stored.contains_key("gs-device"));
}

#[test]
fn sigterm_stops_cleanly() {
    graceful_stop("TERM");
}

#[test]
fn sigint_stops_cleanly() {
    graceful_stop("INT");
}
