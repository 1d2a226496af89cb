//! The Executer against the real `device-sim` (issue 7): platform-sim, the gateway and
//! device-sim as three processes over loopback. A GET reads the temperature, a PUT switches
//! the LED (read back with a GET), and a retried PUT with the same id is executed once —
//! device-sim's own per-path counts, printed on exit, are the witness.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

const WAIT: Duration = Duration::from_secs(15);

struct DeviceSim {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DeviceSim {
    fn wait_line(&self, prefix: &str, budget: Duration) -> String {
        let deadline = Instant::now() + budget;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("device-sim never printed {prefix:?}"),
            }
        }
    }
}

impl Drop for DeviceSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(sim: &mut PlatformSim, command: Value) -> Value {
    let id = command["id"].as_str().unwrap().to_string();
    let mut frame = command;
    frame["type"] = json!("command");
    sim.send_line(&frame.to_string());
    sim.wait_for(WAIT, |v| {
        v["type"] == "command_result" && v["id"] == id.as_str()
    })
    .unwrap_or_else(|| panic!("no result for {id}"))
}

fn results_for(sim: &PlatformSim, id: &str) -> usize {
    sim.frames()
        .iter()
        .filter(|v| v["type"] == "command_result" && v["id"] == id)
        .count()
}

#[test]
fn get_put_and_a_retried_put_against_device_sim() {
    let mut sim = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with(GatewayOptions {
        // Without the Observer, device-sim's request counts are the commands' alone.
        extra_yaml: format!(
            "platform:\n  url: {:?}\n  reconnect_max_s: 1\nobserver:\n  enabled: false\n",
            sim.url()
        ),
        ..GatewayOptions::default()
    });
    sim.wait_type("snapshot", None, WAIT).expect("connected");
    let mut child = Command::new(common::device_sim::bin())
        .args(["--rd", &gw.addr().to_string(), "--count", "2"])
        .args(["--prefix", "ex-", "--lt", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn device-sim");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let devices = DeviceSim { child, lines };
    devices.wait_line("device-sim ready:", Duration::from_secs(30));
    sim.wait_type("device_registered", Some("ex-1"), WAIT)
        .expect("registered at the platform");

    let r = run(
        &mut sim,
        json!({"id": "t", "ep": "ex-1", "method": "GET", "path": "/sensors/temp"}),
    );
    assert_eq!(r["code"], "2.05", "{r}");
    assert_eq!(r["payload_encoding"], "utf8", "{r}");
    assert!(!r["payload"].as_str().unwrap().is_empty(), "{r}");

    let put = json!({"id": "led-on", "ep": "ex-1", "method": "PUT", "path": "/actuators/led",
                     "payload": "on", "content_format": 0});
    let r = run(&mut sim, put.clone());
    assert_eq!(r["code"], "2.04", "{r}");
    let r = run(
        &mut sim,
        json!({"id": "led-get", "ep": "ex-1", "method": "GET", "path": "/actuators/led"}),
    );
    assert_eq!(r["code"], "2.05", "{r}");
    assert_eq!(r["payload"], "on", "{r}");

    // The platform retries the PUT: answered again, not executed again.
    let mut frame = put;
    frame["type"] = json!("command");
    sim.send_line(&frame.to_string());
    let deadline = Instant::now() + WAIT;
    while results_for(&sim, "led-on") < 2 {
        assert!(Instant::now() < deadline, "the retry was not answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    for (id, n) in [("t", 1), ("led-on", 2), ("led-get", 1)] {
        assert_eq!(results_for(&sim, id), n, "results for {id}");
    }

    let _ = Command::new("kill")
        .args(["-TERM", &devices.child.id().to_string()])
        .status();
    let summary = devices.wait_line("device-sim requests served:", Duration::from_secs(10));
    assert!(summary.contains("PUT /actuators/led 1"), "{summary}");
    assert!(summary.contains("GET /actuators/led 1"), "{summary}");
}
