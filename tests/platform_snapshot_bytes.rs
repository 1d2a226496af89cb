//! Snapshots bigger than the platform's frame limit (issue 25 item 2), with the real binaries
//! over loopback: 700 devices registered over CoAP with ~7.4 KB of links each (a ~5.8 MB
//! registry view, under the 1,000 devices of one part by count) meet a `platform-sim` whose frame limit is 1 MiB or 256 KiB. The old link sent the
//! whole snapshot as one frame; the platform closed with 1009, the link re-dialled at once and
//! sent it again, forever, and nothing else got through.

mod common;

use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::platform_sim::PlatformSim;
use common::raw_device::RawDevice;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

/// Generous: a 5 MB snapshot on a loaded 2-core box, and back-off delays of a few seconds.
const WAIT: Duration = Duration::from_secs(90);
const BIG_DEVICES: usize = 700;
const LINKS: usize = 12;

/// 12 links with a 600-byte title each: ~7.4 KB of link-format, one datagram under the
/// gateway's 8 KiB.
fn big_links(device: usize) -> String {
    let title = format!("{device:04}").repeat(150);
    (0..LINKS)
        .map(|i| format!("</l/{i}>;title=\"{title}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// A data directory holding `BIG_DEVICES` big registrations and `cmd`, a small device at
/// `device`'s address for commands. Registered with the platform link off, so the platform sees
/// them first in a snapshot.
fn big_registry(device: &RawDevice) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = Gateway::start_with(GatewayOptions {
        data_dir: Some(dir.path().join("data")),
        ..GatewayOptions::default()
    });
    let peer = Peer::new(gw.addr());
    for i in 0..BIG_DEVICES {
        register(&peer, &format!("ep=big{i}"), &big_links(i));
    }
    register(
        &peer,
        &format!("ep=cmd&base=coap://{}", device.addr),
        "</temp>",
    );
    assert_eq!(gw.terminate(), Some(0), "clean stop flushes the registry");
    dir
}

/// A gateway on `data` linked to `sim` (default `platform.max_frame_bytes`).
fn linked_gateway(data: &tempfile::TempDir, sim: &PlatformSim) -> Gateway {
    Gateway::start_with(GatewayOptions {
        data_dir: Some(data.path().join("data")),
        extra_yaml: format!(
            "platform:\n  url: {:?}\nexecuter:\n  send_to_offline: true\n",
            sim.url()
        ),
        ..GatewayOptions::default()
    })
}

fn sessions(sim: &PlatformSim) -> usize {
    sim.stderr_lines()
        .iter()
        .filter(|l| l.contains("gateway connected from"))
        .count()
}

/// The snapshot after the last `hello`, once its last part is in: (hello, parts).
fn last_complete_snapshot(sim: &PlatformSim) -> Option<(Value, Vec<Value>)> {
    let frames = sim.frames();
    let start = frames.iter().rposition(|f| f["type"] == "hello")?;
    let parts: Vec<Value> = frames[start + 1..]
        .iter()
        .filter(|f| f["type"] == "snapshot")
        .cloned()
        .collect();
    parts
        .iter()
        .any(|p| p["last"] == true)
        .then(|| (frames[start].clone(), parts))
}

/// Wait for a whole snapshot; fail with what the platform saw meanwhile.
fn wait_complete_snapshot(sim: &PlatformSim) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = last_complete_snapshot(sim) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no complete snapshot within {WAIT:?}: {} sessions; platform-sim said {:#?}",
            sessions(sim),
            sim.stderr_lines()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every device once, in parts numbered 0.. with only the final one `last`, each part's JSON
/// at most `limit` bytes.
fn assert_whole_snapshot(hello: &Value, parts: &[Value], limit: usize) {
    assert_eq!(hello["devices"], BIG_DEVICES + 1, "{hello}");
    let mut names = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["part"], i);
        assert_eq!(part["last"], i + 1 == parts.len());
        // serde_json prints what it parsed in as many bytes as the gateway wrote.
        let bytes = part.to_string().len();
        assert!(bytes <= limit, "part {i} is {bytes} bytes, over {limit}");
        for d in part["devices"].as_array().expect("devices") {
            assert!(d.get("links_truncated").is_none(), "no device needs it");
            assert_eq!(d["links"].as_array().map(Vec::len).unwrap_or(1), {
                if d["ep"] == "cmd" {
                    1
                } else {
                    LINKS
                }
            });
            names.push(d["ep"].as_str().expect("ep").to_owned());
        }
    }
    names.sort();
    let mut expected: Vec<String> = (0..BIG_DEVICES).map(|i| format!("big{i}")).collect();
    expected.push("cmd".into());
    expected.sort();
    assert_eq!(names, expected, "every device exactly once");
    let total: usize = parts.iter().map(|p| p.to_string().len()).sum();
    assert!(
        total > 4 << 20,
        "the snapshot is several MiB: {total} bytes"
    );
}

/// A command reaches the device and its result comes back.
fn assert_command_round_trip(sim: &mut PlatformSim, id: &str) {
    sim.send_line(&format!(
        r#"{{"type":"command","id":"{id}","ep":"cmd","method":"GET","path":"/temp"}}"#
    ));
    let result = sim
        .wait_for(WAIT, |f| f["type"] == "command_result" && f["id"] == id)
        .expect("a command_result");
    assert_eq!(result["code"], "2.05", "{result}");
}

#[test]
fn a_multi_mib_snapshot_reaches_a_platform_with_a_1_mib_frame_limit_in_parts() {
    let device = RawDevice::start();
    let data = big_registry(&device);
    let limit = 1 << 20;
    let mut sim = PlatformSim::start_args("127.0.0.1:0", None, &["--max-frame", "1048576"]);
    let _gw = linked_gateway(&data, &sim);

    let (hello, parts) = wait_complete_snapshot(&sim);
    assert_whole_snapshot(&hello, &parts, limit);
    assert!(parts.len() >= 5, "{} parts", parts.len());
    assert_command_round_trip(&mut sim, "c1");
    assert_eq!(
        sessions(&sim),
        1,
        "one connection: {:#?}",
        sim.stderr_lines()
    );
    assert!(
        !sim.stderr_lines().iter().any(|l| l.contains("1009")),
        "no frame was refused: {:#?}",
        sim.stderr_lines()
    );
}

/// The platform's limit (256 KiB) is below the gateway's bound (the default 1 MiB): it
/// refuses a part with 1009. The link must not storm: it backs off, lowers its bound, and the
/// snapshot, then commands, get through within a handful of connections.
#[test]
fn a_platform_refusing_frames_as_too_big_gets_no_reconnect_storm() {
    let device = RawDevice::start();
    let data = big_registry(&device);
    let limit = 256 << 10;
    let mut sim = PlatformSim::start_args("127.0.0.1:0", None, &["--max-frame", "262144"]);
    let gw = linked_gateway(&data, &sim);

    let (hello, parts) = wait_complete_snapshot(&sim);
    assert_whole_snapshot(&hello, &parts, limit);
    assert_command_round_trip(&mut sim, "c1");
    // The old link connected every ~0.5 s for as long as it ran; count over a further window.
    std::thread::sleep(Duration::from_secs(10));
    let count = sessions(&sim);
    eprintln!(
        "{count} connections; the last snapshot in {} parts",
        parts.len()
    );
    assert!(
        (2..=5).contains(&count),
        "{count} connections: {:#?}",
        sim.stderr_lines()
    );
    assert_command_round_trip(&mut sim, "c2");
    assert!(
        gw.wait_for_log(
            "refused a frame as too big (close 1009",
            Duration::from_secs(5)
        ),
        "the cause is logged"
    );
    let lines = gw.log_text();
    let refusals = lines.matches("refused a frame as too big").count();
    assert!(refusals <= 3, "{refusals} refusal lines:\n{lines}");
}
