//! Crash durability under load (issue 11): several rounds on one data directory, each starting
//! the real gateway, driving registrations, updates and deletions from several threads, and
//! SIGKILLing it at a random moment. Then, on the stopped database (`rd-dump --json`) and on the
//! restarted gateway (lookups), every acknowledged change must be there: each registration that
//! got 2.01 is present at its location with its links, each acknowledged update (2.04) is at
//! least as new as acknowledged, each acknowledged DELETE (2.02) stays deleted, and each status
//! change the Pinger reported (status 0, logged only after the Registry's flush) is stored.
//! Each round waits for at least one such status change before it picks its kill point, so the
//! status check always has something to check. tests/rd_persistence.rs covers the
//! single-request cases; this adds concurrency and random kill points. Bounded: 4 rounds, each
//! at most the status deadline plus ~3 s of load (about 5 s each when nothing is wrong).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_gateway::device_object::{AttrRecord, DeviceRecord};
use common::coap_peer::*;
use common::rd_dump::{link_records, stored_registrations};
use common::{write_config, Gateway, GatewayOptions};
use rand::Rng;

const ROUNDS: usize = 4;
const THREADS: usize = 4;
/// A request in flight when the gateway dies gives up after this (it is simply unacknowledged).
const REQUEST_BUDGET: Duration = Duration::from_secs(2);
/// Devices per round that never answer a ping: the Pinger marks them 0.
const SILENT_PER_ROUND: usize = 3;
/// How long the first status change of a round may take (due after about one 1 s interval plus
/// a 300 ms timeout): a defect bound for a loaded 2-core box, not a timing claim.
const STATUS_DEADLINE: Duration = Duration::from_secs(30);
/// Hard stop of a client thread: the kill (which ends it) comes well before.
const CLIENT_HARD_STOP: Duration = Duration::from_secs(60);

/// What the clients know about one endpoint they registered.
#[derive(Clone, Debug, Default)]
struct Expected {
    location: String,
    links: String,
    /// Highest `seq` an update was acknowledged with (0: none).
    seq_acked: u64,
    /// Highest `seq` sent at all; an unacknowledged update may still have been applied.
    seq_sent: u64,
    delete_sent: bool,
    delete_acked: bool,
}

#[derive(Default)]
struct RoundCounts {
    registered: usize,
    updated: usize,
    deleted: usize,
    status_acked: usize,
    /// 4.29 / 5.03 answers (nothing written).
    refused: usize,
}

/// Registrations one client thread makes per round at most (the lookup check reads them all,
/// ~90 bytes each, Block2 up to 1,000 blocks).
const MAX_REGISTRATIONS_PER_THREAD: usize = 2_000;

fn gateway_yaml() -> String {
    // A fast pinger so that status changes happen within a round; silent devices are found by
    // their first missed ping.
    "pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 300\n  attempts: 1\n".into()
}

/// One client thread: registers fresh endpoints, updates and deletes some of its own, until
/// the gateway stops answering or `stop` is set.
fn drive(
    addr: std::net::SocketAddr,
    round: usize,
    thread: usize,
    stop: Arc<AtomicBool>,
    book: Arc<Mutex<BTreeMap<String, Expected>>>,
    counts: Arc<Mutex<RoundCounts>>,
) {
    let peer = Peer::new(addr).with_budget(REQUEST_BUDGET);
    let mut rng = rand::thread_rng();
    let mut mine: Vec<String> = Vec::new();
    let mut seq = 0u64;
    let mut created = 0usize;
    let hard_stop = Instant::now() + CLIENT_HARD_STOP;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) || Instant::now() > hard_stop {
            break;
        }
        // Past the cap a thread only updates and deletes: a round that waits long for its
        // status change must not grow the store (and the Pinger's sweep) without bound.
        let roll: f64 = if created >= MAX_REGISTRATIONS_PER_THREAD && !mine.is_empty() {
            rng.gen_range(0.0..0.35)
        } else {
            rng.gen()
        };
        if roll < 0.25 && !mine.is_empty() {
            let ep = mine[rng.gen_range(0..mine.len())].clone();
            let location = book.lock().unwrap()[&ep].location.clone();
            seq += 1;
            book.lock().unwrap().get_mut(&ep).unwrap().seq_sent = seq;
            match peer.try_request(&Req::post(&format!("{location}?seq={seq}"))) {
                Ok(r) if r.code == "2.04" => {
                    book.lock().unwrap().get_mut(&ep).unwrap().seq_acked = seq;
                    counts.lock().unwrap().updated += 1;
                }
                Ok(r) if refused(&r, &counts) => {}
                Ok(r) => panic!("update of {ep} answered {} {}", r.code, r.text()),
                Err(_) => break,
            }
        } else if roll < 0.35 && !mine.is_empty() {
            let ep = mine.swap_remove(rng.gen_range(0..mine.len()));
            let location = book.lock().unwrap()[&ep].location.clone();
            book.lock().unwrap().get_mut(&ep).unwrap().delete_sent = true;
            match peer.try_request(&Req::delete(&location)) {
                Ok(r) if r.code == "2.02" => {
                    book.lock().unwrap().get_mut(&ep).unwrap().delete_acked = true;
                    counts.lock().unwrap().deleted += 1;
                }
                Ok(r) if refused(&r, &counts) => {}
                Ok(r) => panic!("delete of {ep} answered {} {}", r.code, r.text()),
                Err(_) => break,
            }
        } else {
            let ep = format!("crash-r{round}-t{thread}-{i}");
            let links = format!(
                "</s/{i}>;rt=\"r{round} temp\";if=sensor,<coap://[2001:db8::{thread}]/x>;anchor=\"/s/{i}\";rel=alt"
            );
            match peer.try_request(&Req::post(&format!("/rd?ep={ep}&lt=3600")).links(&links)) {
                Ok(r) if r.code == "2.01" => {
                    book.lock().unwrap().insert(
                        ep.clone(),
                        Expected {
                            location: r.location(),
                            links,
                            ..Expected::default()
                        },
                    );
                    mine.push(ep);
                    created += 1;
                    counts.lock().unwrap().registered += 1;
                }
                Ok(r) if refused(&r, &counts) => {}
                Ok(r) => panic!("registration of {ep} answered {} {}", r.code, r.text()),
                Err(_) => break,
            }
        }
    }
}

/// A rate limit (4.29, RFC 8516) or an overload (5.03) refuses without writing: not
/// acknowledged, so nothing to check; back off a little as Max-Age asks.
fn refused(r: &Resp, counts: &Mutex<RoundCounts>) -> bool {
    if r.code != "4.29" && r.code != "5.03" {
        return false;
    }
    counts.lock().unwrap().refused += 1;
    std::thread::sleep(Duration::from_millis(20));
    true
}

fn seq_of(dev: &DeviceRecord) -> u64 {
    match dev.attrs.get("seq") {
        Some(AttrRecord::Text(v)) => v
            .split(' ')
            .next_back()
            .map_or(0, |v| v.parse().expect("seq is a number")),
        _ => 0,
    }
}

#[derive(Default)]
struct Checked {
    /// Endpoints whose last change was acknowledged (a 2.01 and maybe 2.04s, or a 2.02).
    acknowledged: usize,
    /// Of those, found as acknowledged (present with the right links and update, or absent).
    found: usize,
    lost: usize,
    /// A DELETE sent but unanswered at the kill: either outcome is right.
    in_doubt: usize,
}

/// Every acknowledged change of `book` is in `dump`.
fn check(book: &BTreeMap<String, Expected>, dump: &BTreeMap<String, DeviceRecord>) -> Checked {
    let mut c = Checked::default();
    for (ep, want) in book {
        if want.delete_sent && !want.delete_acked {
            c.in_doubt += 1;
            if let Some(reg) = dump.get(ep) {
                assert_eq!(reg.location, want.location, "{ep} moved");
            }
            continue;
        }
        c.acknowledged += 1;
        match dump.get(ep) {
            None if want.delete_acked => c.found += 1,
            None => {
                eprintln!("LOST: acknowledged registration {ep} at {}", want.location);
                c.lost += 1;
            }
            Some(_) if want.delete_acked => {
                eprintln!("LOST: acknowledged DELETE of {ep} undone");
                c.lost += 1;
            }
            Some(reg) => {
                assert_eq!(reg.location, want.location, "{ep} moved");
                assert_eq!(reg.links, link_records(&want.links), "{ep}'s links changed");
                let seq = seq_of(reg);
                if seq < want.seq_acked || seq > want.seq_sent {
                    eprintln!(
                        "LOST: {ep} has seq={seq}, acknowledged {} (sent up to {})",
                        want.seq_acked, want.seq_sent
                    );
                    c.lost += 1;
                } else {
                    c.found += 1;
                }
            }
        }
    }
    c
}

#[test]
fn acknowledged_changes_survive_sigkill_under_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let opts = GatewayOptions {
        extra_yaml: gateway_yaml(),
        ..GatewayOptions::default()
    };
    let config = write_config(tmp.path(), &data_dir, &opts);
    let book: Arc<Mutex<BTreeMap<String, Expected>>> = Arc::default();
    // ep -> status 0 acknowledged (the Pinger's log line follows the Registry's flush).
    let mut silent_acked: Vec<String> = Vec::new();
    let mut rng = rand::thread_rng();
    let (mut total_acked, mut total_found, mut total_lost) = (0, 0, 0);
    // Every round's silent sockets stay bound until the test ends. A closed one frees its port,
    // and any CoAP endpoint that later binds it (a client of a later round, or another test's
    // socket on a shared CI box) answers the next gateway's ping with a Reset: the device then
    // legitimately goes back to status 1, and the status check would report a loss.
    let mut silent_kept: Vec<Peer> = Vec::new();

    for round in 0..ROUNDS {
        let mut gw = Gateway::spawn(&config, data_dir.clone(), 1);
        let addr = gw.addr();
        // Silent devices: registered from sockets that stay open until the kill and never
        // read, so every ping times out (an open socket: no ICMP, no port reuse by a client).
        let silent: Vec<Peer> = (0..SILENT_PER_ROUND)
            .map(|k| {
                let p = Peer::new(addr);
                register(&p, &format!("ep=crash-silent-r{round}-{k}&lt=3600"), "</q>");
                p
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<Mutex<RoundCounts>> = Arc::default();
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (stop, book, counts) = (stop.clone(), book.clone(), counts.clone());
                std::thread::spawn(move || drive(addr, round, t, stop, book, counts))
            })
            .collect();
        // A status change of this round is acknowledged (its log line follows the flush)
        // before the kill point is chosen: the check below is never vacuous. The other silent
        // devices' changes may still be in flight at the kill.
        let t0 = Instant::now();
        assert!(
            gw.wait_for_log(&format!("pinger: crash-silent-r{round}-"), STATUS_DEADLINE),
            "round {round}: no silent device went to status 0 within {STATUS_DEADLINE:?}"
        );
        let delay = t0.elapsed() + Duration::from_millis(rng.gen_range(0..2_500));
        std::thread::sleep(delay.saturating_sub(t0.elapsed()));
        gw.kill9();
        silent_kept.extend(silent);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("client thread");
        }
        // The log reader threads drain the pipe after the child is gone.
        std::thread::sleep(Duration::from_millis(200));
        let log = gw.log_text();
        for line in log.lines() {
            if line.contains("is disconnected (status 0)") {
                if let Some(ep) = line
                    .split("pinger: ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .filter(|ep| ep.starts_with("crash-silent-"))
                {
                    if !silent_acked.iter().any(|e| e == ep) {
                        silent_acked.push(ep.to_string());
                        counts.lock().unwrap().status_acked += 1;
                    }
                }
            }
        }
        drop(gw);

        let dump = stored_registrations(&data_dir);
        let book_now = book.lock().unwrap().clone();
        let checked = check(&book_now, &dump);
        let lost = checked.lost;
        let status_lost = silent_acked
            .iter()
            .filter(|ep| dump.get(*ep).map(|r| r.status) != Some(0))
            .inspect(|ep| {
                eprintln!("LOST: status 0 of {ep}");
                for line in log.lines().filter(|l| l.contains(ep.as_str())) {
                    eprintln!("  this round's log: {line}");
                }
            })
            .count();
        let c = counts.lock().unwrap();
        eprintln!(
            "round {round}: killed after {delay:?}; acknowledged {} registrations, {} updates, \
             {} deletes, {} status-0 changes ({} refused); all rounds so far: {} endpoints acknowledged \
             (registered/updated or deleted), found {}, lost {}, {} deletes in doubt",
            c.registered,
            c.updated,
            c.deleted,
            c.status_acked,
            c.refused,
            checked.acknowledged,
            checked.found,
            lost + status_lost,
            checked.in_doubt
        );
        assert!(
            c.registered > 0,
            "round {round}: no registration was acknowledged"
        );
        assert!(
            c.status_acked > 0,
            "round {round}: no status change was acknowledged, the status check would be vacuous"
        );
        // The book is cumulative: the last round's check covers every round.
        total_acked = checked.acknowledged;
        total_found = checked.found;
        total_lost += lost + status_lost;
        assert_eq!(
            lost + status_lost,
            0,
            "acknowledged changes lost in round {round}"
        );
        drop(c);

        // The restarted gateway serves what the dump shows.
        let gw = Gateway::spawn(&config, data_dir.clone(), 1);
        let p = Peer::new(gw.addr());
        let listed = lookup(&p, &format!("/rd-lookup/ep?ep=crash-r{round}-t0-*"));
        let in_dump = dump
            .keys()
            .filter(|ep| ep.starts_with(&format!("crash-r{round}-t0-")))
            .count();
        assert_eq!(
            listed.len(),
            in_dump,
            "lookup after restart disagrees with the store"
        );
        drop(gw);
    }
    assert!(
        silent_acked.len() >= ROUNDS,
        "each round acknowledged a status change: {silent_acked:?}"
    );
    eprintln!(
        "summary: {ROUNDS} rounds, last check: {total_acked} acknowledged, {total_found} found, {total_lost} lost; \
         {} status-0 changes acknowledged and kept",
        silent_acked.len()
    );
}
