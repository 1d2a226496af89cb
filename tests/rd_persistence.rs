//! Registrations made over CoAP survive a restart of the gateway process (SIGTERM and SIGKILL)
//! with the same location and links; an acknowledged registration is durable. `rd-dump` on
//! the stopped gateway's data directory shows them (issue 4 "What it must show", issue 2).

mod common;

use std::process::Command;
use std::time::Duration;

use common::coap_peer::*;
use common::Gateway;

const LINKS: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\",\
<http://www.example.com/sensors/temp>;anchor=\"/sensors/temp\";rel=\"describedby\"";

struct Before {
    loc: String,
    ep: Link,
    res: Vec<Link>,
}

fn register_and_capture(gw: &Gateway, query: &str, ep: &str) -> (Peer, Before) {
    let p = Peer::new(gw.addr());
    let loc = register(&p, query, LINKS);
    let ep_l = ep_link(&p, ep).expect("listed");
    let res = lookup(&p, &format!("/rd-lookup/res?ep={ep}"));
    assert_eq!(res.len(), 2);
    (p, Before { loc, ep: ep_l, res })
}

fn assert_same_after_restart(gw: &Gateway, ep: &str, before: &Before) {
    let p = Peer::new(gw.addr());
    let after = ep_link(&p, ep).unwrap_or_else(|| panic!("{ep} lost across restart"));
    assert_eq!(
        after.target, before.ep.target,
        "location changed across restart"
    );
    assert!(after.target.ends_with(&before.loc));
    for attr in ["ep", "d", "base", "et"] {
        assert_eq!(after.get(attr), before.ep.get(attr), "{attr} changed");
    }
    let res = lookup(&p, &format!("/rd-lookup/res?ep={ep}"));
    assert_eq!(link_set(&res), link_set(&before.res), "links changed");
    // The registration resource is live: an update works at the old location.
    assert_eq!(p.request(&Req::post(&before.loc)).code, "2.04");
}

/// `ep`'s registration at `loc` is gone: not in either lookup, and its location answers 4.04
/// to an update (a deleted registration has no grace: it is not revived) and to a DELETE.
fn assert_gone(gw: &Gateway, ep: &str, loc: &str) {
    let p = Peer::new(gw.addr());
    assert!(ep_link(&p, ep).is_none(), "deleted {ep} is listed again");
    assert!(
        lookup(&p, &format!("/rd-lookup/res?ep={ep}")).is_empty(),
        "deleted {ep}'s links are listed again"
    );
    assert_eq!(
        p.request(&Req::post(loc)).code,
        "4.04",
        "an update revived deleted {ep}"
    );
    assert_eq!(p.delete(loc).code, "4.04", "deleted {ep} is still there");
}

#[test]
fn registration_survives_sigterm_restart_with_same_location_and_links() {
    let mut gw = Gateway::start();
    let (_p, before) = register_and_capture(&gw, "ep=durable1&d=sec1&et=oic.d.sensor", "durable1");
    let code = gw.terminate();
    assert_eq!(code, Some(0), "SIGTERM should be a clean exit");
    let mut gw2 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    assert_same_after_restart(&gw2, "durable1", &before);
    // The restored registration is a real one: a DELETE at its old location removes it, and
    // the removal is what the next start sees.
    let p = Peer::new(gw2.addr());
    assert_eq!(p.delete(&before.loc).code, "2.02");
    assert_gone(&gw2, "durable1", &before.loc);
    assert_eq!(gw2.terminate(), Some(0), "SIGTERM should be a clean exit");
    let gw3 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    assert_gone(&gw3, "durable1", &before.loc);
}

#[test]
fn acknowledged_registration_survives_sigkill() {
    let mut gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=durable2&lt=3600", LINKS);
    // No lookup, no pause: the 2.01 itself must mean "on disk".
    gw.kill9();
    let gw2 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    let q = Peer::new(gw2.addr());
    let l = ep_link(&q, "durable2").expect("acknowledged registration lost on SIGKILL");
    assert!(l.target.ends_with(&loc));
    assert_eq!(l.get("base"), Some(p.derived_base().as_str()));
    let base = p.derived_base();
    assert_eq!(
        res_targets(&q, "/rd-lookup/res?ep=durable2"),
        vec![
            format!("{base}/sensors/temp"),
            "http://www.example.com/sensors/temp".to_string(),
        ]
    );
}

#[test]
fn update_and_delete_survive_sigkill() {
    let mut gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let gone = register(&p, "ep=deleted", "</a>");
    let moved = register(&p, "ep=moved", "</a>");
    assert_eq!(p.delete(&gone).code, "2.02");
    let q = Peer::new(gw.addr());
    assert_eq!(
        q.request(&Req::post(&format!("{moved}?foo=bar"))).code,
        "2.04"
    );
    gw.kill9();
    let mut gw2 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    let r = Peer::new(gw2.addr());
    let l = ep_link(&r, "moved").expect("moved lost");
    assert_eq!(
        l.get("base"),
        Some(q.derived_base().as_str()),
        "update's base lost"
    );
    assert_eq!(l.get("foo"), Some("bar"), "update's extra attribute lost");
    assert_gone(&gw2, "deleted", &gone);

    // Stays gone: more writes (a new registration, an update) and a second SIGKILL must not
    // bring the deleted registration back from an older record on disk.
    let s = Peer::new(gw2.addr());
    register(&s, "ep=later", "</b>");
    assert_eq!(s.request(&Req::post(&moved)).code, "2.04");
    gw2.kill9();
    let gw3 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    let t = Peer::new(gw3.addr());
    assert!(
        ep_link(&t, "later").is_some(),
        "the later registration lost"
    );
    assert!(ep_link(&t, "moved").is_some(), "moved lost");
    assert_gone(&gw3, "deleted", &gone);
}

#[test]
fn many_registrations_survive_restart() {
    let mut gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let mut locs = Vec::new();
    for i in 0..50 {
        locs.push(register(
            &p,
            &format!("ep=many-{i:02}"),
            &format!("</r/{i}>"),
        ));
    }
    gw.kill9();
    let gw2 = Gateway::spawn(&gw.config_path, gw.data_dir.clone(), 1);
    let q = Peer::new(gw2.addr());
    let eps = lookup(&q, "/rd-lookup/ep?ep=many-*");
    assert_eq!(eps.len(), 50);
    for (i, loc) in locs.iter().enumerate() {
        let l = eps
            .iter()
            .find(|l| l.get("ep") == Some(&format!("many-{i:02}")))
            .expect("missing");
        assert!(l.target.ends_with(loc));
    }
}

/// The `rd-dump` binary (a compile error if the package stops building it).
fn rd_dump() -> &'static str {
    env!("CARGO_BIN_EXE_rd-dump")
}

#[test]
fn rd_dump_shows_registrations_of_a_stopped_gateway() {
    let dump = rd_dump();
    let mut gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=dumped&d=sec1", "</sensors/temp>;rt=\"temperature\"");
    register(&p, "ep=dumpdefault", "</x>");
    register(&p, "ep=dumplt&lt=120", "</y>");
    assert_eq!(gw.terminate(), Some(0));

    let table = run_bounded(
        Command::new(dump).arg("--data-dir").arg(&gw.data_dir),
        Duration::from_secs(10),
    );
    assert_eq!(table.status, Some(0), "{table:?}");
    assert!(table.stdout.contains("dumped"), "{}", table.stdout);
    assert!(table.stdout.contains("sec1"), "{}", table.stdout);
    assert!(table.stdout.contains("/sensors/temp"), "{}", table.stdout);

    let json = run_bounded(
        Command::new(dump)
            .arg("--data-dir")
            .arg(&gw.data_dir)
            .arg("--json"),
        Duration::from_secs(10),
    );
    assert_eq!(json.status, Some(0), "{json:?}");
    let objs: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(
        objs.len(),
        3,
        "one object per registration: {}",
        json.stdout
    );
    let find = |ep: &str| {
        objs.iter()
            .find(|o| o.to_string().contains(&format!("\"{ep}\"")))
            .unwrap_or_else(|| panic!("{ep} not in dump: {}", json.stdout))
            .clone()
    };
    // lt default 90000 (RFC 9176 §5) and the explicit 120 are what the registry stored.
    assert!(
        contains_number(&find("dumpdefault"), 90_000),
        "{}",
        json.stdout
    );
    assert!(contains_number(&find("dumplt"), 120), "{}", json.stdout);
    let _ = find("dumped");
}

fn contains_number(v: &serde_json::Value, n: u64) -> bool {
    match v {
        serde_json::Value::Number(x) => x.as_u64() == Some(n),
        serde_json::Value::Array(a) => a.iter().any(|x| contains_number(x, n)),
        serde_json::Value::Object(o) => o.values().any(|x| contains_number(x, n)),
        _ => false,
    }
}

#[test]
fn rd_dump_refuses_cleanly_while_the_gateway_holds_the_database() {
    let dump = rd_dump();
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=locked", "</a>");
    let out = run_bounded(
        Command::new(dump).arg("--data-dir").arg(&gw.data_dir),
        Duration::from_secs(10),
    );
    assert!(out.status.is_some(), "rd-dump hung on a locked database");
    assert_ne!(out.status, Some(0), "{out:?}");
    assert!(
        !out.stderr.contains("panicked"),
        "a backtrace instead of a message: {}",
        out.stderr
    );
}
