//! The RD over coaps (CoAP over DTLS 1.2, and what that work must show), driven by two DTLS
//! stacks none of us wrote: libcoap's `coap-client-openssl` and `coap-client-gnutls` (Debian
//! `libcoap3-bin`), as subprocesses under a hard bound. The gateway is the real binary
//! (`common::Gateway`) with `dtls.listen` on 127.0.0.1:0, its own identities file in the
//! test's temporary directory, and the admin server on, so the DTLS counters are read from
//! `GET /metrics`.
//!
//! What is proven: PSK and certificate registration, update, lookup and removal with both
//! clients; the identity's authority over names (4.03, globs); a plain request can never change
//! a registration made over DTLS (4.01); `security.plain_coap` `lookup_only` and `off`; a wrong
//! key, an unknown identity or an untrusted certificate gets no session and stores nothing
//! (and is counted); SIGHUP adds and removes identities; a spoofed ClientHello gets only a
//! HelloVerifyRequest no larger than itself and no session.
//!
//! Each libcoap client is guarded by `require_tool` (a failure in CI, a skip elsewhere).
//! Certificates are made in the test with `rcgen` (P-256 ECDSA): no further tool needed.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::pki::Pki;
use common::{require_tool, Gateway, GatewayOptions};

/// Hard bound on one libcoap run (its own `-B` is shorter).
const LIMIT: Duration = Duration::from_secs(15);
const OPENSSL: &str = "coap-client-openssl";
const GNUTLS: &str = "coap-client-gnutls";
const CLIENTS: [&str; 2] = [OPENSSL, GNUTLS];

/// `secret-node1` and friends, as the identities file holds them (hex) and libcoap's `-k`
/// takes them (the raw bytes).
const NODE1_KEY: &str = "secret-node1";
const NODE2_KEY: &str = "secret-node2";
const SENSORS_KEY: &str = "secret-sensors";
/// Short, so a handshake a client abandons ends (and is counted) well inside a test.
const HANDSHAKE_TIMEOUT_S: u64 = 2;
const LINKS: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\"";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn psk_entry(identity: &str, key: &str) -> String {
    format!("  - identity: {identity}\n    psk_hex: \"{}\"\n", hex(key))
}

// ---- the gateway -------------------------------------------------------------------------

/// A gateway with a coaps listener, its admin server, and the directory holding its config,
/// identities file and certificates.
struct Coaps {
    gw: Gateway,
    /// The coaps address (`dtls.listen: ["127.0.0.1:0"]`, resolved).
    coaps: SocketAddr,
    dir: tempfile::TempDir,
}

impl Coaps {
    /// Start with `identities` (the YAML list under `identities:`), `plain_coap`, and
    /// `dtls_extra` (lines indented by two under `dtls:`). `plain_listen` is `rd.listen`.
    fn start(identities: &str, plain_coap: &str, dtls_extra: &str, plain_listen: &str) -> Coaps {
        Coaps::start_with(identities, plain_coap, dtls_extra, plain_listen, "")
    }

    /// [`Coaps::start`] with `top` (whole top-level sections) appended to the config.
    fn start_with(
        identities: &str,
        plain_coap: &str,
        dtls_extra: &str,
        plain_listen: &str,
        top: &str,
    ) -> Coaps {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = dir.path().join("identities.yaml");
        std::fs::write(&ids, format!("identities:\n{identities}")).expect("write identities");
        let data = dir.path().join("data");
        let opts = GatewayOptions {
            listen: vec![plain_listen.to_string()],
            extra_yaml: format!(
                "pinger:\n  enabled: false\ndtls:\n  listen: [\"127.0.0.1:0\"]\n  \
                 identities_file: {ids:?}\n  handshake_timeout_s: {HANDSHAKE_TIMEOUT_S}\n\
                 {dtls_extra}security:\n  plain_coap: {plain_coap}\n{top}"
            ),
            data_dir: Some(data.clone()),
        };
        let config = common::write_config_with_http(dir.path(), &data, &opts, "127.0.0.1:0");
        let plain = usize::from(plain_coap != "off");
        let mut gw = Gateway::spawn(&config, data, plain);
        // The admin server starts after the RD's sockets are bound and logged.
        gw.wait_for_http();
        let coaps = gw
            .log_text()
            .lines()
            .find_map(|l| l.split("rd listening on coaps://").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no coaps listener logged:\n{}", gw.log_text()));
        Coaps { gw, coaps, dir }
    }

    /// PSK identities only, plain CoAP open (so a 4.01 comes from the DTLS binding alone).
    fn psk(identities: &str) -> Coaps {
        Coaps::start(identities, "open", "", "127.0.0.1:0")
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("coaps://{}{path_and_query}", self.coaps)
    }

    fn plain(&self) -> Peer {
        Peer::new(self.gw.addr())
    }

    fn identities_path(&self) -> PathBuf {
        self.dir.path().join("identities.yaml")
    }

    /// Every registration, as the plain lookup interface shows it.
    fn endpoints(&self) -> Vec<Link> {
        let r = self.plain().get("/rd-lookup/ep");
        assert_eq!(r.code, "2.05", "{r:?}");
        r.links()
    }

    /// The registration resource of `ep` (`/reg/N`), from the plain lookup interface.
    fn location(&self, ep: &str) -> String {
        self.endpoints()
            .into_iter()
            .find(|l| l.get("ep") == Some(ep))
            .map(|l| l.target.clone())
            .unwrap_or_else(|| panic!("{ep} is not registered"))
    }

    /// `GET /api/devices/{ep}` (the device object: `lt`, `base`, `links`...).
    fn device(&self, ep: &str) -> serde_json::Value {
        let r = common::http::get(self.gw.http_addr(), &format!("/api/devices/{ep}"));
        r.json()
    }

    /// The value of one series in `GET /metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let body = common::http::get(self.gw.http_addr(), "/metrics").text();
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Wait (bounded) until `series` reaches at least `at_least`; its last value.
    fn wait_metric(&self, series: &str, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(series);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Coaps {
    /// Handshakes that ended without a session: failed or timed out.
    fn refused(&self) -> f64 {
        self.metric(FAILED) + self.metric(TIMED_OUT)
    }

    /// Wait (bounded) until [`Coaps::refused`] reaches `at_least` (an abandoned handshake ends
    /// at the handshake timeout); its last value.
    fn wait_refused(&self, at_least: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.refused();
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const FAILED: &str = "coap_gateway_dtls_handshakes_total{outcome=\"failed\"}";
const TIMED_OUT: &str = "coap_gateway_dtls_handshakes_total{outcome=\"timed_out\"}";
const COMPLETED: &str = "coap_gateway_dtls_handshakes_total{outcome=\"completed\"}";
const STARTED: &str = "coap_gateway_dtls_handshakes_started_total";
const HVR_SENT: &str = "coap_gateway_dtls_hello_verify_requests_sent_total";
const SESSIONS: &str = "coap_gateway_dtls_sessions";
const COMPACTED: &str = "coap_gateway_dtls_sessions_compacted_total";
const RECORDS_DROPPED: &str = "coap_gateway_dtls_records_dropped_total";

// ---- libcoap ------------------------------------------------------------------------------

/// How a libcoap client authenticates.
enum Cred<'a> {
    Psk {
        identity: &'a str,
        key: &'a str,
    },
    Cert {
        cert: &'a Path,
        key: &'a Path,
        ca: &'a Path,
    },
}

impl Cred<'_> {
    fn args(&self) -> Vec<String> {
        match self {
            Cred::Psk { identity, key } => {
                vec![
                    "-u".into(),
                    identity.to_string(),
                    "-k".into(),
                    key.to_string(),
                ]
            }
            Cred::Cert { cert, key, ca } => vec![
                "-c".into(),
                cert.display().to_string(),
                "-j".into(),
                key.display().to_string(),
                "-C".into(),
                ca.display().to_string(),
            ],
        }
    }
}

fn psk<'a>(identity: &'a str, key: &'a str) -> Cred<'a> {
    Cred::Psk { identity, key }
}

/// Run `client` (`-v 6`, `-B 4`) with `cred` and `args` on `uri`.
fn libcoap(client: &str, cred: &Cred<'_>, args: &[&str], uri: &str) -> Ran {
    let mut cmd = Command::new(client);
    cmd.args(["-B", "4", "-v", "6"])
        .args(cred.args())
        .args(args)
        .arg(uri);
    run_bounded(&mut cmd, LIMIT)
}

/// The last response libcoap printed: its code and Location-Path segments. Its PDU lines
/// look like `v:1 t:ACK c:2.01 i:d450 {01} [ Location-Path:reg, Location-Path:2 ]`.
fn response(ran: &Ran) -> Option<(String, Vec<String>)> {
    let mut found = None;
    for line in ran
        .stdout
        .lines()
        .chain(ran.stderr.lines())
        .filter(|l| l.trim_start().starts_with("v:1"))
    {
        let Some(code) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("c:"))
            .filter(|c| c.len() == 4 && c.as_bytes()[1] == b'.' && c != &"0.00")
        else {
            continue;
        };
        let opts = line
            .split_once('[')
            .and_then(|(_, r)| r.rsplit_once(']'))
            .map(|(o, _)| o)
            .unwrap_or("");
        let locs = opts
            .split(", ")
            .filter_map(|o| o.trim().strip_prefix("Location-Path:"))
            .map(str::to_string)
            .collect();
        found = Some((code.to_string(), locs));
    }
    found
}

/// The payload of the last response libcoap printed (`-v 6` echoes it as ` :: 'PAYLOAD'`;
/// stdout also carries the payload itself, run together with log lines).
fn payload(ran: &Ran) -> String {
    common::libcoap::parse(&ran.stdout)
        .into_iter()
        .rfind(|m| m.is_response())
        .and_then(|m| m.payload)
        .unwrap_or_default()
}

fn code(ran: &Ran) -> Option<String> {
    response(ran).map(|(c, _)| c)
}

/// Register `ep` over coaps from local port `port`; the registration's path (`/reg/N`).
fn register(client: &str, gw: &Coaps, cred: &Cred<'_>, ep: &str, port: u16) -> String {
    let port = port.to_string();
    let ran = libcoap(
        client,
        cred,
        &[
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            "post",
            "-t",
            "40",
            "-e",
            LINKS,
        ],
        &gw.url(&format!("/rd?ep={ep}&lt=300")),
    );
    let (code, loc) = response(&ran).unwrap_or_else(|| panic!("{client}: no response: {ran:?}"));
    assert_eq!(code, "2.01", "{client} registering {ep}: {ran:?}");
    assert!(!loc.is_empty(), "{client}: no Location-Path: {ran:?}");
    format!("/{}", loc.join("/"))
}

/// A currently free UDP port on 127.0.0.1 (for `-p`, so the derived base is known).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn has_clients() -> bool {
    CLIENTS.iter().all(|c| require_tool(c))
}

fn ep_names(links: &[Link]) -> Vec<String> {
    links
        .iter()
        .filter_map(|l| l.get("ep").map(str::to_string))
        .collect()
}

// ---- PSK ----------------------------------------------------------------------------------

/// Register, update (from another source port), look up over coaps, delete: with each client.
#[test]
fn psk_register_update_lookup_delete_with_both_clients() {
    if !has_clients() {
        return;
    }
    let gw = Coaps::psk(&psk_entry("node1", NODE1_KEY));
    let node1 = psk("node1", NODE1_KEY);
    for client in CLIENTS {
        let port = free_port();
        let loc = register(client, &gw, &node1, "node1", port);

        // From another port: the registration belongs to the identity, not to the address;
        // its derived base follows the update's source (RFC 9176 §5.3.1).
        let port = free_port();
        let port_s = port.to_string();
        let upd = libcoap(
            client,
            &node1,
            &["-a", "127.0.0.1", "-p", &port_s, "-m", "post"],
            &gw.url(&format!("{loc}?lt=600")),
        );
        assert_eq!(code(&upd).as_deref(), Some("2.04"), "{client}: {upd:?}");

        let look = libcoap(client, &node1, &[], &gw.url("/rd-lookup/ep?ep=node1"));
        assert_eq!(code(&look).as_deref(), Some("2.05"), "{client}: {look:?}");
        let links =
            parse_links(&payload(&look)).unwrap_or_else(|e| panic!("{client}: {e}: {look:?}"));
        assert_eq!(links.len(), 1, "{client}: {look:?}");
        let base = format!("coaps://127.0.0.1:{port}");
        assert_eq!(
            links[0].get("base"),
            Some(base.as_str()),
            "{client}: {look:?}"
        );
        assert_eq!(gw.device("node1")["lt"], 600, "{client}: the update took");
        assert!(links[0].target.ends_with(&loc), "{client}: {look:?}");

        let del = libcoap(client, &node1, &["-m", "delete"], &gw.url(&loc));
        assert_eq!(code(&del).as_deref(), Some("2.02"), "{client}: {del:?}");
        assert!(gw.endpoints().is_empty(), "{client}: removed, yet listed");
    }
    assert!(gw.metric(COMPLETED) >= 8.0, "8 sessions were established");
    assert_eq!(gw.metric(FAILED), 0.0);
}

/// RFC 9176 §7: an identity registers only the names its entry allows (default: its own).
/// Many requests in one session, both ways through the gateway's own record layer (the
/// session leaves OpenSSL with its first request): a registration sent in 64-byte Block1
/// blocks and a lookup read in 64-byte Block2 blocks, each one libcoap run over one session.
/// Every record both libraries sealed opened (none dropped), and the links arrive whole.
#[test]
fn block_wise_over_one_session_runs_on_the_record_layer() {
    if !has_clients() {
        return;
    }
    let gw = Coaps::psk(&psk_entry("node1", NODE1_KEY));
    let node1 = psk("node1", NODE1_KEY);
    let links: Vec<String> = (0..40)
        .map(|i| format!("</sensors/t{i}>;rt=\"temperature\";if=\"sensor\""))
        .collect();
    let links = links.join(",");
    assert!(links.len() > 20 * 64, "many blocks each way");
    for client in CLIENTS {
        let compacted = gw.metric(COMPACTED);
        let reg = libcoap(
            client,
            &node1,
            &["-m", "post", "-t", "40", "-b", "64", "-e", &links],
            &gw.url("/rd?ep=node1&lt=300"),
        );
        assert_eq!(code(&reg).as_deref(), Some("2.01"), "{client}: {reg:?}");
        // The reassembled body, as libcoap writes it (`-o`): the log shows only the last block.
        let body = gw.dir.path().join(format!("{client}.lookup"));
        let out = body.display().to_string();
        let look = libcoap(
            client,
            &node1,
            &["-b", "64", "-o", &out],
            &gw.url("/rd-lookup/res?ep=node1"),
        );
        assert_eq!(code(&look).as_deref(), Some("2.05"), "{client}: {look:?}");
        let body = std::fs::read_to_string(&body).unwrap_or_default();
        let got = parse_links(&body).unwrap_or_else(|e| panic!("{client}: {e}: {body:?}"));
        assert_eq!(got.len(), 40, "{client}: every link, reassembled: {look:?}");
        assert!(
            gw.wait_metric(COMPACTED, compacted + 2.0) >= compacted + 2.0,
            "{client}: both sessions moved to the record layer"
        );
        assert_eq!(
            gw.metric(RECORDS_DROPPED),
            0.0,
            "{client}: every record opened"
        );
        let del = libcoap(
            client,
            &node1,
            &["-m", "delete"],
            &gw.url(&gw.location("node1")),
        );
        assert_eq!(code(&del).as_deref(), Some("2.02"), "{client}: {del:?}");
    }
}

#[test]
fn an_identity_registers_only_the_names_it_may_use() {
    if !has_clients() {
        return;
    }
    let ids = format!(
        "{}    endpoints: [\"sensor-*\"]\n{}",
        psk_entry("sensors", SENSORS_KEY),
        psk_entry("node1", NODE1_KEY)
    );
    let gw = Coaps::psk(&ids);
    for client in CLIENTS {
        let as_node1 = libcoap(
            client,
            &psk("node1", NODE1_KEY),
            &["-m", "post", "-t", "40", "-e", LINKS],
            &gw.url("/rd?ep=node2"),
        );
        assert_eq!(
            code(&as_node1).as_deref(),
            Some("4.03"),
            "{client}: {as_node1:?}"
        );
        let sensors = psk("sensors", SENSORS_KEY);
        let other = libcoap(client, &sensors, &["-m", "post"], &gw.url("/rd?ep=node1"));
        assert_eq!(code(&other).as_deref(), Some("4.03"), "{client}: {other:?}");
        assert!(
            gw.endpoints().is_empty(),
            "{client}: a refused name was stored"
        );
    }
    let loc = register(
        OPENSSL,
        &gw,
        &psk("sensors", SENSORS_KEY),
        "sensor-1",
        free_port(),
    );
    let loc2 = register(
        GNUTLS,
        &gw,
        &psk("sensors", SENSORS_KEY),
        "sensor-2",
        free_port(),
    );
    assert_ne!(loc, loc2);
    let mut names = ep_names(&gw.endpoints());
    names.sort();
    assert_eq!(names, ["sensor-1", "sensor-2"]);
    // One identity may not touch another's registration, even one its globs do not cover.
    let node1_loc = register(OPENSSL, &gw, &psk("node1", NODE1_KEY), "node1", free_port());
    let steal = libcoap(
        GNUTLS,
        &psk("sensors", SENSORS_KEY),
        &["-m", "delete"],
        &gw.url(&node1_loc),
    );
    assert_eq!(code(&steal).as_deref(), Some("4.03"), "{steal:?}");
    assert_eq!(gw.endpoints().len(), 3);
}

/// A plain-UDP update or removal of a registration made over DTLS: 4.01, and it stays as it
/// was (plain CoAP is `open` here, so the refusal comes from the DTLS binding alone).
#[test]
fn plain_coap_cannot_change_a_dtls_registration() {
    if !require_tool(OPENSSL) {
        return;
    }
    let gw = Coaps::psk(&psk_entry("node1", NODE1_KEY));
    let port = free_port();
    let loc = register(OPENSSL, &gw, &psk("node1", NODE1_KEY), "node1", port);
    let before = gw.endpoints();

    let plain = gw.plain();
    let upd = plain.request(&Req::post(&format!("{loc}?lt=999&base=coap://127.0.0.1:9")));
    assert_eq!(upd.code, "4.01", "{upd:?}");
    let del = plain.delete(&loc);
    assert_eq!(del.code, "4.01", "{del:?}");
    // Re-registering the same name over plain UDP would replace it: refused too.
    let rereg = plain.post_links("/rd?ep=node1", "</evil>");
    assert_eq!(rereg.code, "4.01", "{rereg:?}");

    let after = gw.endpoints();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].target, before[0].target);
    assert_eq!(
        gw.device("node1")["lt"],
        300,
        "the plain update changed the lifetime"
    );
    let base = format!("coaps://127.0.0.1:{port}");
    assert_eq!(after[0].get("base"), Some(base.as_str()));
    let res = plain.get("/rd-lookup/res?ep=node1");
    assert!(res.text().contains("/sensors/temp"), "{res:?}");
    assert!(!res.text().contains("/evil"), "{res:?}");

    // A plain registration of another name is still allowed (`open`).
    assert_eq!(plain.post_links("/rd?ep=legacy", "</x>").code, "2.01");
}

/// `security.plain_coap: lookup_only`: plain writes 4.01, plain lookups answered.
#[test]
fn plain_coap_lookup_only_refuses_writes_and_answers_lookups() {
    if !require_tool(OPENSSL) {
        return;
    }
    let gw = Coaps::start(
        &psk_entry("node1", NODE1_KEY),
        "lookup_only",
        "",
        "127.0.0.1:0",
    );
    let plain = gw.plain();
    let reg = plain.post_links("/rd?ep=plain1", "</x>");
    assert_eq!(reg.code, "4.01", "{reg:?}");
    let simple = plain.request(&Req::post("/.well-known/rd?ep=plain2"));
    assert_eq!(simple.code, "4.01", "{simple:?}");
    assert!(gw.endpoints().is_empty());

    register(OPENSSL, &gw, &psk("node1", NODE1_KEY), "node1", free_port());
    assert_eq!(ep_names(&gw.endpoints()), ["node1"]);
    let res = plain.get("/rd-lookup/res?rt=temperature");
    assert_eq!(res.code, "2.05", "{res:?}");
    assert_eq!(res.links().len(), 1, "{res:?}");
}

/// `security.plain_coap: off`: the plain socket is never opened; coaps works.
#[test]
fn plain_coap_off_binds_no_plain_socket() {
    if !require_tool(OPENSSL) {
        return;
    }
    let plain_port = free_port();
    let gw = Coaps::start(
        &psk_entry("node1", NODE1_KEY),
        "off",
        "",
        &format!("127.0.0.1:{plain_port}"),
    );
    assert!(
        !gw.gw.log_text().contains("rd listening on udp://"),
        "{}",
        gw.gw.log_text()
    );
    // Nothing answers a plain request sent to the configured port.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let rd: SocketAddr = format!("127.0.0.1:{plain_port}").parse().expect("addr");
    let peer = Peer::with_socket(sock, rd).with_budget(Duration::from_secs(3));
    let got = peer.try_request(&Req::get("/rd-lookup/ep"));
    assert!(got.is_err(), "a plain request was answered: {got:?}");
    // And the port is free: the gateway holds no socket on it.
    UdpSocket::bind(rd).expect("the plain port is not bound by the gateway");

    let loc = register(OPENSSL, &gw, &psk("node1", NODE1_KEY), "node1", free_port());
    let look = libcoap(
        OPENSSL,
        &psk("node1", NODE1_KEY),
        &[],
        &gw.url("/rd-lookup/ep"),
    );
    assert!(payload(&look).starts_with(&format!("<{loc}>")), "{look:?}");
}

// ---- refused handshakes -------------------------------------------------------------------

/// A wrong key and an unknown identity: no session, nothing stored, each failure counted. An
/// unknown identity fails at once (alert unknown_psk_identity); with a wrong key the client's
/// Finished does not decrypt, and DTLS silently discards such records (RFC 6347 §4.1.2.7), so
/// that handshake ends at `dtls.handshake_timeout_s`, counted as timed out.
#[test]
fn wrong_key_or_unknown_identity_gets_no_session_and_stores_nothing() {
    if !has_clients() {
        return;
    }
    let gw = Coaps::psk(&psk_entry("node1", NODE1_KEY));
    let (mut failed, mut timed_out) = (0.0, 0.0);
    for client in CLIENTS {
        for (cred, unknown) in [
            (psk("node1", "not-the-key"), false),
            (psk("nobody", NODE1_KEY), true),
        ] {
            let ran = libcoap(
                client,
                &cred,
                &["-m", "post", "-t", "40", "-e", LINKS],
                &gw.url("/rd?ep=node1"),
            );
            assert_eq!(
                response(&ran),
                None,
                "{client}: answered without a session: {ran:?}"
            );
            if unknown {
                failed += 1.0;
            } else {
                timed_out += 1.0;
            }
            assert_eq!(
                gw.wait_refused(failed + timed_out),
                failed + timed_out,
                "{ran:?}"
            );
            assert_eq!(
                (gw.metric(FAILED), gw.metric(TIMED_OUT)),
                (failed, timed_out),
                "{client} (unknown identity: {unknown}): {ran:?}"
            );
        }
    }
    assert_eq!(gw.metric(COMPLETED), 0.0);
    assert_eq!(gw.metric(STARTED), 4.0);
    assert_eq!(
        gw.metric(SESSIONS),
        0.0,
        "a failed handshake keeps no session"
    );
    assert!(gw.endpoints().is_empty());
    let log = gw.gw.log_text();
    assert!(
        !log.contains(NODE1_KEY) && !log.contains(&hex(NODE1_KEY)),
        "a key in the log"
    );
}

/// Certificate mode: a client certificate whose CN is a (key-less) identity registers as that
/// name with both clients; one signed by another CA gets no session and stores nothing.
#[test]
fn certificates_register_as_their_cn_and_an_untrusted_one_is_refused() {
    if !has_clients() {
        return;
    }
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let dir = pki_dir.path();
    let pki = Pki::new(dir, "devices-ca");
    let (srv_cert, srv_key) = pki.leaf(dir, "127.0.0.1", &["127.0.0.1"], "rd");
    let (dev_cert, dev_key) = pki.leaf(dir, "sensor-7.example", &[], "dev");
    let rogue = Pki::new(dir, "rogue-ca");
    let (bad_cert, bad_key) = rogue.leaf(dir, "sensor-7.example", &[], "rogue");
    let ca = dir.join("devices-ca.pem");
    let ids = "  - identity: sensor-7.example\n    endpoints: [\"sensor-7*\"]\n";
    let dtls = format!("  cert_file: {srv_cert:?}\n  key_file: {srv_key:?}\n  ca_file: {ca:?}\n",);
    let gw = Coaps::start(ids, "open", &dtls, "127.0.0.1:0");

    let dev = Cred::Cert {
        cert: &dev_cert,
        key: &dev_key,
        ca: &ca,
    };
    for (i, client) in CLIENTS.iter().enumerate() {
        let ep = format!("sensor-7-{i}");
        let loc = register(client, &gw, &dev, &ep, free_port());
        let upd = libcoap(client, &dev, &["-m", "post"], &gw.url(&loc));
        assert_eq!(code(&upd).as_deref(), Some("2.04"), "{client}: {upd:?}");
        let other = libcoap(client, &dev, &["-m", "post"], &gw.url("/rd?ep=node1"));
        assert_eq!(code(&other).as_deref(), Some("4.03"), "{client}: {other:?}");
    }
    let mut names = ep_names(&gw.endpoints());
    names.sort();
    assert_eq!(names, ["sensor-7-0", "sensor-7-1"]);

    let before = gw.metric(FAILED);
    let bad = Cred::Cert {
        cert: &bad_cert,
        key: &bad_key,
        ca: &ca,
    };
    for (n, client) in CLIENTS.iter().enumerate() {
        let ran = libcoap(
            client,
            &bad,
            &["-m", "post", "-t", "40", "-e", LINKS],
            &gw.url("/rd?ep=sensor-7-rogue"),
        );
        assert_eq!(
            response(&ran),
            None,
            "{client}: untrusted cert answered: {ran:?}"
        );
        // Verification fails in the handshake: a fatal alert, counted as failed at once.
        let want = before + n as f64 + 1.0;
        assert_eq!(gw.wait_metric(FAILED, want), want, "{client}: {ran:?}");
    }
    assert_eq!(gw.metric(TIMED_OUT), 0.0);
    assert_eq!(gw.endpoints().len(), 2, "the rogue registration was stored");
}

// ---- SIGHUP -------------------------------------------------------------------------------

/// The identities file is re-read on SIGHUP: node2 added and node1 removed without a restart.
#[test]
fn sighup_adds_and_removes_identities() {
    if !require_tool(OPENSSL) {
        return;
    }
    let gw = Coaps::psk(&psk_entry("node1", NODE1_KEY));
    let node1 = psk("node1", NODE1_KEY);
    let node2 = psk("node2", NODE2_KEY);
    register(OPENSSL, &gw, &node1, "node1", free_port());
    let refused = libcoap(OPENSSL, &node2, &["-m", "post"], &gw.url("/rd?ep=node2"));
    assert_eq!(
        response(&refused),
        None,
        "node2 before the reload: {refused:?}"
    );
    assert_eq!(
        gw.wait_metric(FAILED, 1.0),
        1.0,
        "node2's handshake: {refused:?}"
    );

    // Written beside and renamed over, as docs/identities.example.yaml recommends.
    let path = gw.identities_path();
    let next = path.with_extension("next");
    std::fs::write(
        &next,
        format!("identities:\n{}", psk_entry("node2", NODE2_KEY)),
    )
    .expect("write new identities");
    std::fs::rename(&next, &path).expect("rename identities");
    let pid = gw.gw.pid().expect("gateway running");
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill -HUP");
    assert!(sent.success());
    assert!(
        gw.gw
            .wait_for_log("1 added, 1 removed", Duration::from_secs(20)),
        "no reload logged:\n{}",
        gw.gw.log_text()
    );

    let loc = register(OPENSSL, &gw, &node2, "node2", free_port());
    let upd = libcoap(OPENSSL, &node2, &["-m", "post"], &gw.url(&loc));
    assert_eq!(code(&upd).as_deref(), Some("2.04"), "{upd:?}");
    let gone = libcoap(OPENSSL, &node1, &["-m", "post"], &gw.url("/rd?ep=node1"));
    assert_eq!(response(&gone), None, "node1 after its removal: {gone:?}");
    assert_eq!(
        gw.wait_metric(FAILED, 2.0),
        2.0,
        "node1's handshake: {gone:?}"
    );
    assert_eq!(gw.metric(COMPLETED), 3.0, "node1 once, node2 twice");
    let mut names = ep_names(&gw.endpoints());
    names.sort();
    // node1's registration outlives its identity (it expires, or an operator removes it).
    assert_eq!(names, ["node1", "node2"]);
}

// ---- a spoofed ClientHello ----------------------------------------------------------------

/// A DTLS 1.2 ClientHello without a cookie, in one record, offering the PSK and ECDHE-ECDSA
/// CCM_8 and GCM suites, as a forged source would send it.
fn client_hello(record_seq: u8) -> Vec<u8> {
    let suites: [u16; 4] = [0xc0a8, 0x00a8, 0xc0ae, 0xc02b];
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // session_id
    body.push(0); // cookie
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&[0, 0]); // no extensions
    let len = body.len() as u32;
    let mut hs = vec![1]; // client_hello
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&[0, 0]); // message_seq
    hs.extend_from_slice(&[0, 0, 0]); // fragment_offset
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, record_seq];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Hellos from 127.0.0.2 (standing for a forged source: `limits.exempt_loopback: false`) get
/// one HelloVerifyRequest each, never larger than the hello, and no session is allocated.
#[test]
fn a_spoofed_client_hello_gets_only_a_small_hello_verify_request() {
    let gw = Coaps::start_with(
        &psk_entry("node1", NODE1_KEY),
        "open",
        "",
        "127.0.0.1:0",
        "limits:\n  exempt_loopback: false\n",
    );
    let spoofer = match UdpSocket::bind("127.0.0.2:0") {
        Ok(s) => s,
        Err(e) => {
            common::skip::skip("a socket on 127.0.0.2", &e.to_string());
            return;
        }
    };
    spoofer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    const HELLOS: u8 = 20;
    let mut buf = [0u8; 2048];
    for seq in 0..HELLOS {
        let hello = client_hello(seq);
        spoofer.send_to(&hello, gw.coaps).expect("send hello");
        let (n, from) = spoofer.recv_from(&mut buf).expect("a HelloVerifyRequest");
        assert_eq!(from, gw.coaps);
        assert!(
            n <= hello.len(),
            "answer {n} bytes to a {}-byte hello",
            hello.len()
        );
        let answer = &buf[..n];
        assert_eq!(answer[0], 22, "a handshake record: {answer:02x?}");
        assert_eq!(&answer[3..5], &[0, 0], "epoch 0");
        assert_eq!(
            answer[5..11],
            [0, 0, 0, 0, 0, seq],
            "the hello's record sequence"
        );
        assert_eq!(answer[13], 3, "hello_verify_request: {answer:02x?}");
    }
    // Exactly one answer each: nothing more arrives.
    spoofer
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    assert!(spoofer.recv_from(&mut buf).is_err(), "a second answer");
    assert_eq!(
        gw.wait_metric(HVR_SENT, f64::from(HELLOS)),
        f64::from(HELLOS)
    );
    assert_eq!(
        gw.metric(STARTED),
        0.0,
        "a handshake started without a cookie"
    );
    assert_eq!(gw.metric(SESSIONS), 0.0, "a session was allocated");
}
