//! The README's examples, run in the order a new user runs them: every shell
//! command in a ```sh block of README.md, then of the docs/ pages in [`WALKED`], is either
//! executed here, with what the document says it shows checked, or listed with the reason it
//! cannot run in a test (it is this suite, it installs into the system, Docker). A command added
//! to or changed in a document without a matching entry here fails the test, so the walkthrough
//! cannot drift from the documents; a new document with ```sh blocks must join [`WALKED`] (or
//! [`RECORDED`]) or the test fails too.
//!
//! It runs in a fresh temporary directory holding a copy of the shipped `config.yaml` (so `./data`
//! is new, as on a fresh machine), with `cargo run --release [--bin NAME] --` mapped to the
//! binaries this suite built. The README's ports are fixed (UDP 5683, HTTP 8080, WebSocket 9000):
//! no other test uses them. Everything it sends goes to loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A defect bound for anything to show up (a loaded 2-core box), not a measurement.
const WAIT: Duration = Duration::from_secs(30);

/// What the walkthrough does with a documented command that contains `key`.
enum Action {
    /// Start it and leave it running; ready once its output contains `ready`.
    Spawn {
        name: &'static str,
        ready: &'static str,
    },
    /// Run it to completion: exit 0 and every `expect` in its stdout.
    Run { expect: &'static [&'static str] },
    /// Stop the running process `name` first (the README says to), then spawn.
    StopThenSpawn {
        stop: &'static str,
        name: &'static str,
        ready: &'static str,
    },
    /// Not run here; the reason is there for the reader of this table.
    NotRun(#[allow(dead_code)] &'static str),
}

/// The documents whose ```sh blocks tell a user what to run, in the order the walkthrough runs
/// them: the README's tour first (it starts the gateway the later pages' commands talk to).
const WALKED: &[&str] = &[
    "README.md",
    "docs/resource-directory.md",
    "docs/devices.md",
    "docs/operations.md",
];

/// Documents whose ```sh blocks record how a measurement was taken (minutes of full load each,
/// and `scripts/bench.sh` repeats them), so they are not run here: every command in them must
/// start with one of the given prefixes, so any other kind of command added there fails.
const RECORDED: &[(&str, &[&str])] = &[(
    "docs/benchmarks.md",
    &[
        "cargo build --release",
        "cargo bench --bench ",
        "cargo bench -p coap-endpoint --bench ",
        "python3 ../shared/bench/coap_rd_load.py ",
        "scripts/bench.sh ",
    ],
)];

/// Every command of the [`WALKED`] documents, in document order, by its document and a
/// substring only it contains there.
fn plan() -> Vec<(&'static str, &'static str, Action)> {
    use Action::*;
    let readme = |(key, action): (&'static str, Action)| ("README.md", key, action);
    let mut plan: Vec<(&'static str, &'static str, Action)> = vec![
        (
            "./scripts/build-deps.sh",
            NotRun("it installs packages; scripts/test.sh ran it before this test"),
        ),
        (
            "cargo run --release -- --config config.yaml",
            Spawn {
                name: "gateway",
                ready: "admin http listening on http://127.0.0.1:8080",
            },
        ),
        ("./scripts/test.sh", NotRun("it is the command that runs this test")),
        (
            "coap-client-notls -m post -t 40 -e '</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs'",
            Run { expect: &[] },
        ),
        (
            "coap-client-notls 'coap://127.0.0.1/rd-lookup/res?rt=temperature'",
            Run {
                expect: &["<coap://127.0.0.1:5690/sensors/temp>;rt=\"temperature\";if=\"sensor\";obs"],
            },
        ),
        (
            "--bin platform-sim -- --listen 127.0.0.1:9000",
            StopThenSpawn {
                stop: "gateway",
                name: "platform-sim",
                ready: "platform-sim listening on ws://127.0.0.1:9000",
            },
        ),
        ("printf 'gateway:", Run { expect: &[] }),
        (
            "cargo run --release -- --config /tmp/gw.yaml",
            Spawn {
                name: "platform gateway",
                ready: "platform link: connected to",
            },
        ),
        (
            "--bin device-sim -- --count 1",
            Spawn {
                name: "device-sim",
                ready: "device-sim ready",
            },
        ),
        (
            "--bin rd-dump -- --data-dir ./data          # a table",
            Run { expect: &["node1"] },
        ),
        (
            "--bin rd-dump -- --data-dir ./data --json",
            Run {
                expect: &["\"ep\":\"node1\""],
            },
        ),
        (
            "--bin rd-dump -- --url http://127.0.0.1:8080          # the same table",
            Run { expect: &["sim-0"] },
        ),
        (
            "--bin rd-dump -- --url http://127.0.0.1:8080 --json",
            Run {
                expect: &["\"ep\":\"sim-0\""],
            },
        ),
        (
            "curl -s localhost:8080/health",
            Run {
                expect: &["\"status\":\"up\""],
            },
        ),
        (
            "curl -s 'localhost:8080/api/devices?rt=temp*&status=0&count=50'",
            Run {
                expect: &["\"devices\":[]"],
            },
        ),
        (
            "curl -s 'localhost:8080/api/devices?q=kitchen&sort=-updated'",
            Run {
                expect: &["\"devices\":[]", "\"counts\":{\"all\":"],
            },
        ),
        (
            "curl -s localhost:8080/metrics | grep ^coap_gateway",
            Run {
                expect: &["coap_gateway_registrations"],
            },
        ),
    ]
    .into_iter()
    .map(readme)
    .collect();
    plan.push((
        "docs/resource-directory.md",
        "coap-client-notls -N -m get -B 6 'coap://224.0.1.187",
        NotRun("multicast leaves by the host's interfaces; tests/rd_multicast.rs runs it inside network namespaces"),
    ));
    plan.push((
        "docs/devices.md",
        "--bin device-sim -- --rd 127.0.0.1:5683 --count 100",
        Spawn {
            name: "device-sim x100",
            ready: "device-sim ready: 100",
        },
    ));
    for (key, action) in [
        (
            "cargo build --release --locked",
            NotRun("the suite's own release build"),
        ),
        ("install -m 0755", NotRun("installs into the system")),
        ("install -D -m 0644", NotRun("installs into the system")),
        (
            "install -m 0644 contrib/",
            NotRun("installs into the system"),
        ),
        ("systemctl daemon-reload", NotRun("needs systemd as init")),
        (
            "journalctl -u coap-gateway",
            NotRun("needs systemd as init"),
        ),
        ("docker build", NotRun("no Docker engine on this machine")),
        ("docker run", NotRun("no Docker engine on this machine")),
    ] {
        plan.push(("docs/operations.md", key, action));
    }
    plan
}

/// The commands of every ```sh block, continuation lines joined, comment lines dropped.
fn sh_commands(document: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in document.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// Every command of the [`WALKED`] documents, in walkthrough order, with its document.
fn walked_commands() -> Vec<(&'static str, String)> {
    WALKED
        .iter()
        .flat_map(|doc| {
            let text = std::fs::read_to_string(repository().join(doc))
                .unwrap_or_else(|e| panic!("{doc}: {e}"));
            sh_commands(&text).into_iter().map(move |c| (*doc, c))
        })
        .collect()
}

/// The walkthrough entry for `command` of `doc`, if exactly one matches.
fn entries_for<'p>(
    plan: &'p [(&'static str, &'static str, Action)],
    doc: &str,
    command: &str,
) -> Vec<(usize, &'p Action)> {
    plan.iter()
        .enumerate()
        .filter(|(_, (d, key, _))| *d == doc && command.contains(key))
        .map(|(i, (_, _, action))| (i, action))
        .collect()
}

/// `cargo run --release [--bin NAME] --` becomes the binary this suite built.
fn with_built_binaries(command: &str, bin_dir: &Path) -> String {
    let mut out = command.to_string();
    for name in ["platform-sim", "device-sim", "rd-dump"] {
        out = out.replace(
            &format!("cargo run --release --bin {name} --"),
            &bin_dir.join(name).display().to_string(),
        );
    }
    out.replace(
        "cargo run --release --",
        &bin_dir.join("coap-gateway").display().to_string(),
    )
}

/// A background process of the walkthrough, its output collected from both streams.
struct Running {
    name: &'static str,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn spawn(name: &'static str, shell: &str, cwd: &Path) -> Running {
        let mut child = Command::new("sh")
            .args(["-c", &format!("exec {shell}")])
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Running {
            name,
            child,
            output,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    fn wait_for(&mut self, needle: &str, budget: Duration) {
        let deadline = Instant::now() + budget;
        loop {
            if self.lines().iter().any(|l| l.contains(needle)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.lines().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {budget:?}:\n{}",
                self.name,
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (what Ctrl-C or `kill` does for the README's user) and wait for the exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(shell: &str, cwd: &Path) -> (bool, String, String) {
    let out = Command::new("timeout")
        .args(["60", "sh", "-c", shell])
        .current_dir(cwd)
        // The README's `mktemp -d` lands in the test's own directory, removed with it.
        .env("TMPDIR", cwd)
        .output()
        .unwrap_or_else(|e| panic!("run {shell}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_documented_command_is_covered_by_the_walkthrough() {
    let commands = walked_commands();
    let plan = plan();
    let mut order = Vec::new();
    for (doc, command) in &commands {
        let matching = entries_for(&plan, doc, command);
        assert_eq!(
            matching.len(),
            1,
            "{doc} command {command:?} matches {} walkthrough entries (want exactly 1)",
            matching.len()
        );
        order.push(matching[0].0);
    }
    for (doc, key, _) in &plan {
        assert!(
            commands.iter().any(|(d, c)| d == doc && c.contains(key)),
            "walkthrough entry {key:?} is no longer in {doc}"
        );
    }
    // In document order: each command's entry comes after the previous one's.
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "the walkthrough's order differs from the documents': {order:?}"
    );
}

#[test]
fn every_document_with_commands_is_walked_or_recorded() {
    let mut documents = Vec::new();
    for dir in [".", "docs"] {
        let entries =
            std::fs::read_dir(repository().join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries.map_while(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                documents.push(if dir == "." {
                    name
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
    }
    assert!(documents.iter().any(|d| d == "README.md"), "{documents:?}");
    for doc in &documents {
        let text = std::fs::read_to_string(repository().join(doc)).expect("document");
        let commands = sh_commands(&text);
        if commands.is_empty() || WALKED.contains(&doc.as_str()) {
            continue;
        }
        let Some((_, prefixes)) = RECORDED.iter().find(|(d, _)| d == doc) else {
            panic!("{doc} has ```sh commands but is neither walked nor recorded: {commands:?}");
        };
        for command in &commands {
            assert!(
                prefixes.iter().any(|p| command.starts_with(p)),
                "{doc} command {command:?} is not a recorded kind of command ({prefixes:?})"
            );
        }
    }
}

#[test]
fn documented_examples_do_what_the_documents_say_in_order_on_a_fresh_directory() {
    if !common::require_tool("coap-client-notls") || !common::require_tool("curl") {
        return;
    }
    let bin_dir = PathBuf::from(common::gateway_bin())
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cwd = tmp.path();
    std::fs::copy(repository().join("config.yaml"), cwd.join("config.yaml")).expect("config");

    let plan = plan();
    let mut running: Vec<Running> = Vec::new();
    for (doc, command) in walked_commands() {
        let Some(&(_, action)) = entries_for(&plan, doc, &command).first() else {
            panic!("{doc} command {command:?} has no walkthrough entry");
        };
        let shell = with_built_binaries(&command, &bin_dir);
        match action {
            Action::NotRun(_) => {}
            Action::Run { expect } => {
                let (ok, stdout, stderr) = run(&shell, cwd);
                assert!(ok, "{command:?} failed:\n{stdout}\n{stderr}");
                for needle in *expect {
                    assert!(
                        stdout.contains(needle),
                        "{command:?} did not print {needle:?}:\n{stdout}\n{stderr}"
                    );
                }
            }
            Action::Spawn { name, ready } => {
                let mut p = Running::spawn(name, &shell, cwd);
                p.wait_for(ready, WAIT);
                running.push(p);
            }
            Action::StopThenSpawn { stop, name, ready } => {
                if let Some(pos) = running.iter().position(|r| r.name == *stop) {
                    running[pos].stop();
                    running.remove(pos);
                }
                let mut p = Running::spawn(name, &shell, cwd);
                p.wait_for(ready, WAIT);
                running.push(p);
            }
        }
        if command.contains("--bin device-sim -- --count 1") {
            // What the README promises in terminal 1: a new device (not an update of an old
            // one: the gateway's data directory is fresh), then its data.
            let platform = running
                .iter_mut()
                .find(|r| r.name == "platform-sim")
                .expect("platform-sim running");
            platform.wait_for("\"type\":\"device_registered\"", WAIT);
            platform.wait_for("\"path\":\"/sensors/temp\"", WAIT);
            let lines = platform.lines();
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("device_registered") && l.contains("\"ep\":\"sim-0\"")),
                "no device_registered for sim-0:\n{}",
                lines.join("\n")
            );
            assert!(
                !lines
                    .iter()
                    .any(|l| l.contains("\"type\":\"device_updated\"")),
                "the README promises device_registered, not device_updated:\n{}",
                lines.join("\n")
            );
        }
    }
    // The set-up gateway kept its data in the temporary directory, not in the checkout.
    assert!(cwd.join("data").is_dir(), "./data of the set-up gateway");
}
