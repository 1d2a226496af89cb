//! Integration tests of the PlatformLink actor against the real `platform-sim` binary over
//! loopback: hello and snapshot parts on connect, live events in order, an outage during which
//! frames are owed and then delivered in order, a refused token retried with back-off (and never
//! logged), error frames for unusable platform frames, commands reaching their recipient,
//! ping/pong liveness, and a platform that drops every snapshot re-dialled with back-off. The
//! tests of protocol v1's delivery order and of the writer's backlog run platform-sim with
//! `--no-ack` (a v1 platform); protocol 1.1's acknowledged delivery is `tests/platform_ack.rs`.
//! The
//! Registry is not part of this worktree: the tests feed the link `RegistryEvent`s and a fake
//! `SnapshotSource` themselves.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::config::Secret;
use coap_gateway::platform::link::LinkSettings;
use coap_gateway::platform::protocol::{encode_payload, CommandErrorKind, DataFrame};
use coap_gateway::platform::{
    CommandResult, GetLinkStats, LinkStats, OutboundFrame, PlatformCommand, PlatformLink,
    SendFrame, SnapshotSource, StopLink,
};
use coap_gateway::registry::{
    BaseOrigin, EndpointName, Registration, RegistrationId, RegistryEvent, RemovalReason, Sector,
    Status,
};
use link_format::{Link, Param};
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const FRAME_WAIT: Duration = Duration::from_secs(10);

// ----- captured logs ---------------------------------------------------------------------------

/// Records logged on a thread no test claimed (e.g. a helper thread of a dependency): no test
/// asserts that a line is there, but a secret found here is still a leak.
static UNATTRIBUTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// The capture of the test running on this thread. `#[actix_rt::test]` runs the test and
    /// every actor it starts with `Actor::start` on the test's own thread, so a test reads only
    /// what its own link logged, never what a concurrent test's link logged (the harness runs
    /// tests of one binary on parallel threads under `cargo test`).
    static MINE: RefCell<Option<Arc<Mutex<Vec<String>>>>> = const { RefCell::new(None) };
}

struct CaptureLogger;

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        let mine = MINE.try_with(|m| m.borrow().clone()).ok().flatten();
        let sink = match &mine {
            Some(sink) => sink.lock(),
            None => UNATTRIBUTED.lock(),
        };
        if let Ok(mut sink) = sink {
            sink.push(line);
        }
    }
    fn flush(&self) {}
}

static CAPTURE: CaptureLogger = CaptureLogger;

/// One test's log records, at every level (trace included, so a dependency that logged
/// request headers would be caught too).
struct Logs(Arc<Mutex<Vec<String>>>);

impl Logs {
    /// What was logged on this test's thread.
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// This test's lines and the unattributed ones: where a secret must appear nowhere.
    fn lines_and_unattributed(&self) -> Vec<String> {
        let mut all = self.lines();
        all.extend(UNATTRIBUTED.lock().unwrap().iter().cloned());
        all
    }
}

/// Install the process's logger (once) and give the calling test thread its own capture.
fn capture_logs() -> Logs {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
    let sink = Arc::new(Mutex::new(Vec::new()));
    MINE.with(|m| *m.borrow_mut() = Some(sink.clone()));
    Logs(sink)
}

// ----- the platform simulator as a child process ------------------------------------------------

struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    frames: UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Sim {
    fn start(listen: &str, extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_platform-sim"))
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn platform-sim");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("read platform-sim banner");
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("platform-sim listening on ws://")
            .or_else(|| {
                first
                    .trim()
                    .strip_prefix("platform-sim listening on wss://")
            })
            .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
            .parse()
            .expect("banner address");
        let (tx, frames) = unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        Sim {
            child,
            stdin,
            addr,
            frames,
            stderr,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/gateway", self.addr)
    }

    /// The next frame the sim received, parsed; every line must be one JSON object.
    async fn next_frame(&mut self) -> Value {
        let line = tokio::time::timeout(FRAME_WAIT, self.frames.recv())
            .await
            .expect("a frame within the wait")
            .expect("platform-sim stdout open");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// No frame for `quiet`.
    async fn assert_silent(&mut self, quiet: Duration) {
        if let Ok(Some(line)) = tokio::time::timeout(quiet, self.frames.recv()).await {
            panic!("unexpected frame {line}");
        }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- registrations, the fake registry, the command sink --------------------------------------

fn registration(id: u64, ep: &str) -> Arc<Registration> {
    Arc::new(Registration {
        status_history: Default::default(),
        last_seen: Default::default(),
        identity: None,
        id: RegistrationId(id),
        ep: EndpointName::new(ep).unwrap(),
        d: Some(Sector::new("floor1").unwrap()),
        base: format!("coap://127.0.0.1:{}", 40_000 + id % 20_000).into(),
        base_origin: BaseOrigin::FromSource,
        lifetime_s: 90_000,
        attrs: vec![Param::new("et", Some("oic.d.sensor"))],
        links: vec![
            Link::new("/sensors/temp")
                .with("rt", Some("temperature"))
                .with("ct", Some("0"))
                .with("obs", None),
            Link::new("/sensors/hum").with("rt", Some("humidity")),
            Link::new("/actuators/led").with("if", Some("core.a")),
        ]
        .into(),
        status: Status::Connected,
        registered_at_ms: 1_795_615_200_000,
        updated_at_ms: 1_795_615_200_000,
        expires_at_ms: 1_795_705_200_000,
        source: format!("127.0.0.1:{}", 40_000 + id % 20_000)
            .parse()
            .unwrap(),
    })
}

#[derive(Default)]
struct FakeRegistry(Mutex<Vec<Arc<Registration>>>);

impl FakeRegistry {
    fn with_devices(n: u64) -> Arc<FakeRegistry> {
        Arc::new(FakeRegistry(Mutex::new(
            (0..n)
                .map(|i| registration(i, &format!("dev{i}")))
                .collect(),
        )))
    }
}

impl SnapshotSource for FakeRegistry {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        self.0.lock().unwrap().clone()
    }
}

/// Stands in for the Executer: hands every command to the test.
struct CommandSink(UnboundedSender<PlatformCommand>);

impl Actor for CommandSink {
    type Context = Context<Self>;
}

impl Handler<PlatformCommand> for CommandSink {
    type Result = ();
    fn handle(&mut self, command: PlatformCommand, _: &mut Context<Self>) {
        let _ = self.0.send(command);
    }
}

fn settings(url: &str) -> LinkSettings {
    let mut s = coap_gateway::config::PlatformConfig::default().link_settings("test-gw");
    s.url = url.to_owned();
    s.reconnect_max = Duration::from_secs(1);
    s.connect_timeout = Duration::from_secs(2);
    s
}

async fn stats(link: &Addr<PlatformLink>) -> LinkStats {
    link.send(GetLinkStats).await.expect("link alive")
}

async fn wait_for(
    link: &Addr<PlatformLink>,
    what: &str,
    pred: impl Fn(&LinkStats) -> bool,
) -> LinkStats {
    let deadline = Instant::now() + FRAME_WAIT;
    loop {
        let s = stats(link).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read `hello` and every snapshot part; returns the endpoint names in snapshot order.
async fn expect_hello_and_snapshot(sim: &mut Sim, devices: usize) -> Vec<String> {
    let hello = sim.next_frame().await;
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!(hello["gateway"], "test-gw");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(hello["devices"], devices);
    let mut names = Vec::new();
    for part in 0.. {
        let frame = sim.next_frame().await;
        assert_eq!(frame["type"], "snapshot", "{frame}");
        assert_eq!(frame["part"], part);
        let list = frame["devices"].as_array().unwrap();
        assert!(list.len() <= 1_000);
        names.extend(list.iter().map(|d| d["ep"].as_str().unwrap().to_owned()));
        if frame["last"] == true {
            break;
        }
        assert_eq!(list.len(), 1_000, "only the last part may be short");
    }
    assert_eq!(names.len(), devices);
    names
}

fn data_frame(i: usize) -> OutboundFrame {
    OutboundFrame::Data(DataFrame {
        ep: "dev1".into(),
        d: Some("floor1".into()),
        path: "/sensors/temp".into(),
        code: "2.05".into(),
        content_format: Some(0),
        payload: encode_payload(format!("{i}").as_bytes()),
        at: "2026-11-25T14:00:00.000Z".into(),
    })
}

// ----- tests ------------------------------------------------------------------------------------

#[actix_rt::test]
async fn hello_and_snapshot_parts_then_live_frames_in_order() {
    let _logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &[]);
    let registry = FakeRegistry::with_devices(2_500);
    let link = PlatformLink::start(settings(&sim.url()), registry.clone(), None);

    let names = expect_hello_and_snapshot(&mut sim, 2_500).await;
    let expected: Vec<String> = (0..2_500).map(|i| format!("dev{i}")).collect();
    assert_eq!(names, expected, "the whole registry, in the source's order");
    wait_for(&link, "connected", |s| s.connected).await;

    let new = registration(9_000, "newcomer");
    let mut offline = (*registration(1, "dev1")).clone();
    offline.status = Status::Disconnected;
    let offline = Arc::new(offline);
    link.do_send(RegistryEvent::Registered(new.clone()));
    link.do_send(RegistryEvent::Updated(new.clone()));
    link.do_send(RegistryEvent::StatusChanged(offline.clone()));
    link.do_send(SendFrame(data_frame(7)));
    link.do_send(RegistryEvent::Removed {
        registration: new.clone(),
        reason: RemovalReason::Deleted,
    });
    link.do_send(RegistryEvent::Removed {
        registration: offline,
        reason: RemovalReason::Expired,
    });
    link.do_send(SendFrame(OutboundFrame::CommandResult(
        CommandResult::failed("c-1", CommandErrorKind::Timeout, "no answer"),
    )));

    let f = sim.next_frame().await;
    assert_eq!(f["type"], "device_registered");
    assert_eq!(f["device"]["ep"], "newcomer");
    assert_eq!(f["device"]["et"], "oic.d.sensor");
    assert_eq!(f["device"]["links"].as_array().unwrap().len(), 3);
    assert_eq!(f["device"]["links"][0]["obs"], true);
    let f = sim.next_frame().await;
    assert_eq!(f["type"], "device_updated");
    let f = sim.next_frame().await;
    assert_eq!(f["type"], "device_status");
    assert_eq!(
        (&f["ep"], &f["d"], &f["status"]),
        (&"dev1".into(), &"floor1".into(), &0.into())
    );
    assert!(f["at"].as_str().unwrap().ends_with('Z'));
    let f = sim.next_frame().await;
    assert_eq!(f["type"], "data");
    assert_eq!(
        (&f["payload"], &f["payload_encoding"]),
        (&"7".into(), &"utf8".into())
    );
    let f = sim.next_frame().await;
    assert_eq!(
        (&f["type"], &f["reason"]),
        (&"device_removed".into(), &"deleted".into())
    );
    let f = sim.next_frame().await;
    assert_eq!(
        (&f["type"], &f["reason"]),
        (&"device_removed".into(), &"expired".into())
    );
    let f = sim.next_frame().await;
    assert_eq!(f["type"], "command_result");
    assert_eq!(f["error"]["kind"], "timeout");

    let s = stats(&link).await;
    assert_eq!((s.connects, s.reconnects, s.queued), (1, 0, 0));

    // A graceful stop reaches the platform as a Close frame ("going away").
    link.do_send(StopLink);
    let deadline = Instant::now() + FRAME_WAIT;
    while !sim
        .stderr()
        .iter()
        .any(|l| l.contains("gateway closed") && l.contains("Away"))
    {
        assert!(
            Instant::now() < deadline,
            "no Close frame: {:?}",
            sim.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.stop();
}

#[actix_rt::test]
async fn frames_owed_during_an_outage_arrive_in_order_after_hello_and_snapshot() {
    let _logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &["--no-ack"]);
    let addr = sim.addr;
    let registry = FakeRegistry::with_devices(3);
    let link = PlatformLink::start(settings(&sim.url()), registry.clone(), None);
    expect_hello_and_snapshot(&mut sim, 3).await;
    wait_for(&link, "connected", |s| s.connected).await;

    sim.stop();
    wait_for(&link, "the link to notice the outage", |s| !s.connected).await;

    // While the platform is away: registrations, status changes and data happen.
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let r = registration(100 + i, &format!("late{i}"));
        registry.0.lock().unwrap().push(r.clone());
        link.do_send(RegistryEvent::Registered(r));
        expected.push(("device_registered".to_string(), format!("late{i}")));
        if i % 4 == 0 {
            link.do_send(SendFrame(data_frame(i as usize)));
            expected.push(("data".to_string(), i.to_string()));
        }
    }
    let owed = wait_for(&link, "frames to be queued", |s| s.queued == expected.len()).await;
    assert_eq!((owed.dropped_data, owed.dropped_events), (0, 0));
    // The outage lasts across failed re-dials (events, not a fixed sleep): the owed frames
    // must survive them.
    let dials = owed.dial_attempts;
    let down = wait_for(&link, "two failed re-dials", |s| {
        s.dial_attempts >= dials + 2
    })
    .await;
    assert!(!down.connected && down.queued == expected.len(), "{down:?}");

    let mut sim = Sim::start(&addr.to_string(), &["--no-ack"]);
    assert_eq!(sim.addr, addr, "restarted on the same port");
    let names = expect_hello_and_snapshot(&mut sim, 43).await;
    assert!(
        names.contains(&"late39".to_string()),
        "the snapshot is taken at reconnect"
    );
    for (kind, key) in &expected {
        let f = sim.next_frame().await;
        assert_eq!(f["type"], kind.as_str(), "{f}");
        match kind.as_str() {
            "data" => assert_eq!(f["payload"], key.as_str()),
            _ => assert_eq!(f["device"]["ep"], key.as_str()),
        }
    }
    // Live again: a new frame follows the owed ones.
    link.do_send(SendFrame(data_frame(999)));
    let f = sim.next_frame().await;
    assert_eq!((&f["type"], &f["payload"]), (&"data".into(), &"999".into()));
    let s = stats(&link).await;
    assert!(s.connected && s.reconnects == 1 && s.queued == 0, "{s:?}");
    sim.stop();
}

#[actix_rt::test]
async fn a_refused_token_is_logged_clearly_without_the_token_and_retried_with_backoff() {
    let logs = capture_logs();
    const WRONG: &str = "wrong-token-7f3a9c1e5d";
    const RIGHT: &str = "right-token-0b8e2d4c6a";
    let mut sim = Sim::start("127.0.0.1:0", &["--token", RIGHT]);
    let mut s = settings(&sim.url());
    s.token = Secret::new(WRONG);
    s.reconnect_max = Duration::from_secs(2);
    let started = Instant::now();
    let link = PlatformLink::start(s, FakeRegistry::with_devices(1), None);

    // Events, not a time window: wait for four refused dials, however slow the machine is.
    let refused = wait_for(&link, "four refusals", |s| s.auth_failures >= 4).await;
    assert_eq!(refused.connects, 0);
    assert!(
        refused.dial_attempts >= refused.auth_failures,
        "every refusal was a dial: {refused:?}"
    );
    // Back-off, not a hot loop. The link announces each delay ("retrying in X s"); its shape
    // is fixed: 0.5 s, then 0.5..1 s, then 1..2 s, then capped at reconnect_max (2 s).
    let captured = logs.lines();
    let delays: Vec<f64> = captured
        .iter()
        .filter(|l| l.contains("platform refused the token"))
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|rest| rest.trim_end_matches(" s").parse().ok())
        .collect();
    assert!(
        delays.len() >= 4,
        "a delay announced per refusal: {captured:#?}"
    );
    let windows = [(0.5, 0.5), (0.5, 1.0), (1.0, 2.0), (1.0, 2.0)];
    for (i, (delay, (low, high))) in delays.iter().zip(windows).enumerate() {
        // Logged with one decimal: allow its rounding.
        assert!(
            (low - 0.05..=high + 0.05).contains(delay),
            "retry {i} announced {delay} s, outside {low}..={high} s: {delays:?}"
        );
    }
    // And the dials really waited: four dials take at least the first three delays. A lower
    // bound only (a loaded machine makes it longer, never shorter); a hot loop fails it.
    let announced: f64 = delays.iter().take(3).sum();
    assert!(
        started.elapsed().as_secs_f64() >= announced - 0.2,
        "4 refusals after {:?}, but {announced} s of back-off were announced",
        started.elapsed()
    );
    assert!(
        captured
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("platform refused the token")),
        "no clear error in {captured:#?}"
    );
    assert!(
        logs.lines_and_unattributed()
            .iter()
            .all(|l| !l.contains(WRONG)),
        "the token leaked into the logs"
    );
    sim.assert_silent(Duration::from_millis(100)).await;
    assert!(
        sim.stderr()
            .iter()
            .filter(|l| l.contains("wrong bearer token (HTTP 401)"))
            .count()
            >= 2,
        "{:?}",
        sim.stderr()
    );
    sim.stop();

    // The same link code with the right token gets in.
    let mut sim = Sim::start("127.0.0.1:0", &["--token", RIGHT]);
    let mut s = settings(&sim.url());
    s.token = Secret::new(RIGHT);
    let _link = PlatformLink::start(s, FakeRegistry::with_devices(1), None);
    expect_hello_and_snapshot(&mut sim, 1).await;
    assert!(
        logs.lines_and_unattributed()
            .iter()
            .all(|l| !l.contains(RIGHT)),
        "the token leaked into the logs"
    );
    sim.stop();
}

#[actix_rt::test]
async fn unusable_platform_frames_get_error_frames_and_the_link_stays_up() {
    let _logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &[]);
    // On its own arbiter (thread), as the gateway is advised to run it.
    let arbiter = actix::Arbiter::new();
    let link = PlatformLink::start_on(
        &arbiter.handle(),
        settings(&sim.url()),
        FakeRegistry::with_devices(0),
        None,
    );
    expect_hello_and_snapshot(&mut sim, 0).await;

    sim.send_line("{not json");
    let f = sim.next_frame().await;
    assert_eq!(f["type"], "error");
    assert!(f.get("id").is_none());
    assert!(f["message"].as_str().unwrap().contains("not valid JSON"));

    sim.send_line(r#"{"type":"reboot","id":"r-1","extra":true}"#);
    let f = sim.next_frame().await;
    assert_eq!((&f["type"], &f["id"]), (&"error".into(), &"r-1".into()));
    assert!(f["message"].as_str().unwrap().contains("reboot"));

    sim.send_line(r#"{"id":"no-type"}"#);
    let f = sim.next_frame().await;
    assert_eq!((&f["type"], &f["id"]), (&"error".into(), &"no-type".into()));

    sim.send_line(r#"["type","command"]"#);
    assert_eq!(sim.next_frame().await["type"], "error");

    // The platform's own `error` (e.g. for a frame type added within v1) is logged, not
    // answered: the next frame is the reply to the command below.
    sim.send_line(r#"{"type":"error","message":"unknown frame type data_error"}"#);

    // A command whose id is known gets its one command_result, even when invalid.
    sim.send_line(r#"{"type":"command","id":"c-bad","ep":"x","method":"BREW","path":"/"}"#);
    let f = sim.next_frame().await;
    assert_eq!(
        (&f["type"], &f["id"]),
        (&"command_result".into(), &"c-bad".into())
    );
    assert_eq!(f["error"]["kind"], "bad_command");

    // No executer: a valid command is still answered exactly once, as bad_command.
    sim.send_line(r#"{"type":"command","id":"c-ok","ep":"x","method":"GET","path":"/a"}"#);
    let f = sim.next_frame().await;
    assert_eq!(
        (&f["type"], &f["id"]),
        (&"command_result".into(), &"c-ok".into())
    );
    assert_eq!(f["error"]["kind"], "bad_command");
    assert!(f["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no command executer"));

    sim.assert_silent(Duration::from_millis(300)).await;
    let s = stats(&link).await;
    assert!(
        s.connected && s.connects == 1,
        "a bad frame must not drop the link: {s:?}"
    );
    sim.stop();
}

#[actix_rt::test]
async fn a_command_reaches_the_recipient_and_its_result_reaches_the_platform() {
    let _logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &["--http-commands"]);
    let (tx, mut commands) = unbounded_channel();
    let sink = CommandSink(tx).start();
    let link = PlatformLink::start(
        settings(&sim.url()),
        FakeRegistry::with_devices(0),
        Some(sink.recipient()),
    );
    expect_hello_and_snapshot(&mut sim, 0).await;
    wait_for(&link, "connected", |s| s.connected).await;

    let body = r#"{"type":"command","id":"cmd-42","ep":"dev1","d":"floor1","method":"PUT",
        "path":"/actuators/led","payload":"AQ==","payload_encoding":"base64","confirmable":false}"#;
    let mut response = awc::Client::default()
        .post(format!("http://{}/command", sim.addr))
        .insert_header(("content-type", "application/json"))
        .send_body(body)
        .await
        .expect("POST /command");
    assert_eq!(response.status().as_u16(), 202);
    let answer: Value = serde_json::from_slice(&response.body().await.unwrap()).unwrap();
    assert_eq!(answer["sent_to"], 1);

    let got = tokio::time::timeout(FRAME_WAIT, commands.recv())
        .await
        .expect("command within the wait")
        .unwrap();
    assert_eq!(got.command.id, "cmd-42");
    assert_eq!(got.command.d.as_deref(), Some("floor1"));
    assert_eq!(got.command.payload_bytes().unwrap(), vec![1]);
    assert!(!got.command.confirmable);

    link.do_send(SendFrame(OutboundFrame::CommandResult(CommandResult {
        id: got.command.id.clone(),
        outcome: coap_gateway::platform::protocol::CommandOutcome::Response {
            code: "2.04".into(),
            content_format: None,
            payload: encode_payload(b""),
            rtt_ms: 3,
        },
    })));
    let f = sim.next_frame().await;
    assert_eq!(
        (&f["type"], &f["id"], &f["code"]),
        (&"command_result".into(), &"cmd-42".into(), &"2.04".into())
    );
    sim.stop();
}

#[actix_rt::test]
async fn a_platform_that_stops_answering_pings_is_redialled() {
    let logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &[]);
    let mut s = settings(&sim.url());
    s.ping_interval = Duration::from_millis(200);
    s.pong_timeout = Duration::from_millis(1_000);
    s.connect_timeout = Duration::from_millis(500);
    let link = PlatformLink::start(s, FakeRegistry::with_devices(1), None);
    expect_hello_and_snapshot(&mut sim, 1).await;
    wait_for(&link, "connected", |s| s.connected).await;
    // Two seconds of pings answered: the link stays up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stats(&link).await.connects, 1);

    // A frozen platform keeps the TCP connection open but answers nothing.
    sim.signal("-STOP");
    let down = wait_for(&link, "the silent link to be dropped", |s| !s.connected).await;
    assert_eq!(down.connects, 1);
    sim.signal("-CONT");
    let up = wait_for(&link, "a re-dial", |s| s.connected && s.connects == 2).await;
    assert_eq!(up.reconnects, 1);
    expect_hello_and_snapshot(&mut sim, 1).await;
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.contains("no pong or frame for")));
    sim.stop();
}

#[actix_rt::test]
async fn a_full_owed_queue_drops_the_oldest_data_first_and_counts_it() {
    let logs = capture_logs();
    let mut sim = Sim::start("127.0.0.1:0", &["--no-ack"]);
    let addr = sim.addr;
    let mut s = settings(&sim.url());
    s.queue_capacity = 6;
    let link = PlatformLink::start(s, FakeRegistry::with_devices(0), None);
    expect_hello_and_snapshot(&mut sim, 0).await;
    wait_for(&link, "connected", |s| s.connected).await;
    sim.stop();
    wait_for(&link, "the outage", |s| !s.connected).await;

    // 3 events among 10 data frames, into room for 6.
    for i in 0..10 {
        link.do_send(SendFrame(data_frame(i)));
        if i % 4 == 1 {
            link.do_send(RegistryEvent::Registered(registration(
                i as u64,
                &format!("ev{i}"),
            )));
        }
    }
    let owed = wait_for(&link, "the drops", |s| s.dropped_data == 7).await;
    assert_eq!((owed.queued, owed.dropped_events), (6, 0));
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.contains("data frames dropped so far")));

    let mut sim = Sim::start(&addr.to_string(), &["--no-ack"]);
    expect_hello_and_snapshot(&mut sim, 0).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let f = sim.next_frame().await;
        got.push(match f["type"].as_str().unwrap() {
            "data" => format!("data {}", f["payload"].as_str().unwrap()),
            other => format!("{other} {}", f["device"]["ep"].as_str().unwrap()),
        });
    }
    assert_eq!(
        got,
        [
            "device_registered ev1",
            "device_registered ev5",
            "data 7",
            "data 8",
            "data 9",
            "device_registered ev9"
        ],
        "events kept, the oldest data dropped, order preserved"
    );
    sim.assert_silent(Duration::from_millis(200)).await;
    sim.stop();
}

#[actix_rt::test]
async fn a_wss_dial_to_a_peer_that_speaks_no_tls_fails_cleanly_and_is_retried() {
    let logs = capture_logs();
    // A TCP peer that accepts and hangs up at once: the TLS handshake cannot succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let link = PlatformLink::start(
        settings(&format!("wss://{addr}/")),
        FakeRegistry::with_devices(0),
        None,
    );
    let s = wait_for(&link, "two failed dials", |s| s.dial_attempts >= 3).await;
    assert_eq!((s.connects, s.auth_failures), (0, 0));
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "TLS dials reached the peer"
    );
    assert!(logs
        .lines()
        .iter()
        .any(|l| l.contains("cannot reach the platform")));
}

#[actix_rt::test]
async fn a_slow_platform_backs_frames_into_the_bounded_queue_not_into_memory() {
    let _logs = capture_logs();
    const FRAMES: usize = 50_000;
    let mut sim = Sim::start("127.0.0.1:0", &["--no-ack"]);
    let mut s = settings(&sim.url());
    s.queue_capacity = 1_000;
    s.pong_timeout = Duration::from_secs(120);
    let link = PlatformLink::start(s, FakeRegistry::with_devices(0), None);
    expect_hello_and_snapshot(&mut sim, 0).await;
    let before = wait_for(&link, "connected", |s| s.connected).await;

    // A platform that stops reading: the kernel buffers fill, then the writer backs up.
    sim.signal("-STOP");
    for i in 0..FRAMES {
        link.do_send(SendFrame(data_frame(i)));
    }
    let backed_up = wait_for(&link, "every frame to be handled", |s| {
        (s.frames_sent - before.frames_sent) as usize + s.queued + s.dropped_data as usize == FRAMES
    })
    .await;
    assert!(backed_up.connected, "{backed_up:?}");
    assert!(
        backed_up.in_flight <= coap_gateway::platform::link::WRITER_HIGH_WATER,
        "{backed_up:?}"
    );
    assert!(backed_up.queued <= 1_000, "{backed_up:?}");
    assert!(
        backed_up.dropped_data > 0,
        "50,000 frames cannot all fit: {backed_up:?}"
    );

    sim.signal("-CONT");
    let expected = FRAMES - backed_up.dropped_data as usize;
    let mut last: Option<usize> = None;
    for _ in 0..expected {
        let f = sim.next_frame().await;
        assert_eq!(f["type"], "data");
        let n: usize = f["payload"].as_str().unwrap().parse().unwrap();
        assert!(
            last.is_none_or(|l| n > l),
            "out of order: {n} after {last:?}"
        );
        last = Some(n);
    }
    assert_eq!(last, Some(FRAMES - 1), "the newest data survives");
    sim.assert_silent(Duration::from_millis(200)).await;
    let after = stats(&link).await;
    assert_eq!((after.queued, after.connects), (0, 1), "{after:?}");
    sim.stop();
}

#[actix_rt::test]
async fn the_link_speaks_wss_with_a_trusted_certificate_and_refuses_an_untrusted_one() {
    let _logs = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let tls_args = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let mut sim = Sim::start("127.0.0.1:0", &tls_args);
    let url = format!("wss://{}/", sim.addr);

    // Not trusted: the self-signed certificate is refused, the dial retried.
    let untrusted = PlatformLink::start(settings(&url), FakeRegistry::with_devices(0), None);
    let s = wait_for(&untrusted, "refused TLS dials", |s| s.dial_attempts >= 2).await;
    assert_eq!(s.connects, 0);
    untrusted.do_send(StopLink);
    sim.assert_silent(Duration::from_millis(100)).await;

    // Trusted: the same server carries the protocol.
    let mut s = settings(&url);
    s.extra_root_certs = vec![certified.cert.der().clone()];
    let link = PlatformLink::start(s, FakeRegistry::with_devices(2), None);
    expect_hello_and_snapshot(&mut sim, 2).await;
    link.do_send(SendFrame(data_frame(5)));
    assert_eq!(sim.next_frame().await["payload"], "5");
    sim.stop();
}

/// A platform that reads the first frame (`hello`) and then closes, without a close code and
/// without reading the snapshot: what a platform does that drops a connection on a frame it
/// will not take. Counts connections.
async fn dropping_platform() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn socket(
        req: HttpRequest,
        body: web::Payload,
        count: web::Data<AtomicUsize>,
    ) -> Result<HttpResponse, actix_web::Error> {
        let (response, session, mut stream) = actix_ws::handle(&req, body)?;
        count.fetch_add(1, Ordering::Relaxed);
        actix_web::rt::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let actix_ws::Message::Text(_) = message {
                    break;
                }
            }
            let _ = session.close(None).await;
        });
        Ok(response)
    }

    let count = web::Data::new(AtomicUsize::new(0));
    let shared = count.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .default_service(web::to(socket))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind the dropping platform");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (format!("ws://{addr}/gateway"), count.into_inner())
}

/// Issue 25 item 2: the link used to reset its back-off on every connect, so a platform that
/// dropped each connection during the snapshot was re-dialled every 0.5 s forever. A connection
/// that ends before the platform answered the Ping behind the snapshot is a failed attempt.
#[actix_rt::test]
async fn a_platform_that_drops_every_snapshot_is_redialled_with_growing_delays() {
    use std::sync::atomic::Ordering;
    let logs = capture_logs();
    let (url, connections) = dropping_platform().await;
    let mut s = settings(&url);
    s.reconnect_max = Duration::from_secs(8);
    let started = Instant::now();
    let link = PlatformLink::start(s, FakeRegistry::with_devices(50), None);

    // Events, not a time window: six connections, however slow the machine is.
    let deadline = Instant::now() + Duration::from_secs(60);
    while connections.load(Ordering::Relaxed) < 6 {
        assert!(Instant::now() < deadline, "{:?}", stats(&link).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Five delays of back-off: at least 0.5 + 0.5 + 1 + 2 + 4 s. A lower bound only (a loaded
    // machine makes it longer); the old link got there in about 2.5 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(7_500),
        "6 connections within {elapsed:?}: no back-off"
    );
    let lines = logs.lines();
    let causes: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("before the platform accepted the snapshot"))
        .collect();
    assert!(
        !causes.is_empty() && causes.len() <= (elapsed.as_secs() / 10 + 1) as usize,
        "one error line per 10 s naming the cause: {causes:#?}"
    );
    assert!(causes[0].starts_with("ERROR"), "{}", causes[0]);
    let st = stats(&link).await;
    assert_eq!(st.snapshots_accepted, 0, "{st:?}");
    assert!(st.snapshots_unaccepted >= 5, "{st:?}");
    link.do_send(StopLink);
}
