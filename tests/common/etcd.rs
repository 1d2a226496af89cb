//! A test-owned etcd cluster: `n` members of Debian's `etcd` 3.4 (`scripts/test.sh` installs
//! `etcd-server` and `etcd-client`) on loopback ports, with their data in a temporary directory
//! that goes with the cluster. The HA tests (`docs/ha-etcd.md`, section 12) kill members,
//! find the Raft leader and read keys back with `etcdctl`, a client independent of ours.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a new cluster may take to elect a leader and answer on every member (a loaded
/// 2-core box): a defect bound, not a measurement.
const START_BUDGET: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    client_port: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// With TLS: the CA, and the client certificate and key every client presents.
    tls: Option<ClientTls>,
    /// The network namespace the members (and `etcdctl`) run in; None: the test's own.
    netns: Option<String>,
}

/// PEM files of a cluster started with [`EtcdCluster::start_tls`].
pub struct ClientTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `prog`, run inside network namespace `netns` when given (`ip netns exec` execs it, so the
/// child's pid is the program's).
fn program(netns: Option<&str>, prog: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns, prog]);
            command
        }
        None => Command::new(prog),
    }
}

/// `n` distinct loopback TCP ports that were free a moment ago. Every listener is held until
/// all are picked: a port freed at once can be handed out again by the next bind, and two
/// members given the same peer port refuse to start ("has duplicate url").
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

impl EtcdCluster {
    /// Start `n` members and wait until each answers `endpoint health`.
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, false, None)
    }

    /// Start `n` members inside network namespace `netns` (made by the test, see `netns.rs`),
    /// on that namespace's loopback: for gateways started there too.
    pub fn start_in_netns(n: usize, netns: &str) -> EtcdCluster {
        EtcdCluster::start_with(n, false, Some(netns))
    }

    /// Start `n` members whose clients speak TLS (a CA of the test's, a server certificate
    /// for 127.0.0.1) and must present a certificate that CA signed (`--client-cert-auth`).
    pub fn start_tls(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, true, None)
    }

    fn start_with(n: usize, with_tls: bool, netns: Option<&str>) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tls, server) = if with_tls {
            let pki = super::pki::Pki::new(dir.path(), "etcd-ca");
            let server = pki.leaf(dir.path(), "127.0.0.1", &["127.0.0.1"], "etcd-server");
            let (cert, key) = pki.leaf(dir.path(), "coap-gateway", &[], "etcd-client");
            let ca = dir.path().join("etcd-ca.pem");
            (Some(ClientTls { ca, cert, key }), Some(server))
        } else {
            (None, None)
        };
        let scheme = if with_tls { "https" } else { "http" };
        let free = free_ports(2 * n);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let token = format!(
            "coap-gateway-test-{}-{}",
            std::process::id(),
            dir.path().display()
        );
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
            let mut command = program(netns, "etcd");
            if let (Some(tls), Some((cert, key))) = (&tls, &server) {
                command.args([
                    "--cert-file",
                    &cert.display().to_string(),
                    "--key-file",
                    &key.display().to_string(),
                    "--trusted-ca-file",
                    &tls.ca.display().to_string(),
                    "--client-cert-auth",
                ]);
            }
            let child = command
                .args([
                    "--name",
                    &name,
                    "--data-dir",
                    &dir.path().join(&name).display().to_string(),
                    "--listen-client-urls",
                    &format!("{scheme}://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("{scheme}://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start etcd (scripts/test.sh installs etcd-server)");
            members.push(Member {
                name,
                client_port: *client,
                child: Some(child),
            });
        }
        let cluster = EtcdCluster {
            dir,
            members,
            tls,
            netns: netns.map(str::to_owned),
        };
        let deadline = Instant::now() + START_BUDGET;
        while !cluster.healthy() {
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy after {START_BUDGET:?}:\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Client endpoints (`127.0.0.1:port`) of the members still running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Client URLs of the members still running, `http://` or (with TLS) `https://`.
    pub fn client_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.endpoints()
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }

    /// The `registry:` section of a replica on this cluster: `prefix`, `member`, `ttl_s`,
    /// then `extra` lines inside `registry.etcd` (indented by four spaces).
    pub fn registry_yaml(&self, prefix: &str, member: &str, ttl_s: u64, extra: &str) -> String {
        let endpoints: Vec<String> = self
            .client_urls()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        format!(
            "registry:\n  backend: etcd\n  etcd:\n    endpoints: [{}]\n    prefix: {prefix}\n    member_name: {member}\n    member_ttl_s: {ttl_s}\n{extra}",
            endpoints.join(", ")
        )
    }

    /// The CA and client certificate of a cluster started with [`Self::start_tls`].
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// Run `etcdctl` against the running members (with the client certificate under TLS).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut command = program(self.netns.as_deref(), "etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client_urls().join(",")));
        if let Some(tls) = &self.tls {
            command.args([
                format!("--cacert={}", tls.ca.display()),
                format!("--cert={}", tls.cert.display()),
                format!("--key={}", tls.key.display()),
            ]);
        }
        command
            .args(args)
            .output()
            .expect("run etcdctl (scripts/test.sh installs etcd-client)")
    }

    /// Whether every running member answers `endpoint health`.
    pub fn healthy(&self) -> bool {
        self.etcdctl(&["endpoint", "health", "--command-timeout=2s"])
            .status
            .success()
    }

    /// The index of the member that is the Raft leader now, if one is known.
    pub fn leader(&self) -> Option<usize> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let leader = status
            .as_array()?
            .iter()
            .find(|s| s["Status"]["leader"] == s["Status"]["header"]["member_id"])?;
        let endpoint = leader["Endpoint"].as_str()?;
        self.members
            .iter()
            .position(|m| endpoint.ends_with(&format!(":{}", m.client_port)))
    }

    /// SIGKILL member `i` (no clean shutdown: what a crash does).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The keys under `prefix`, read by `etcdctl` (linearizable, from the quorum).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
        assert!(
            out.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The platform acknowledgement the leader of the cluster under `prefix` stored
    /// (`P/platform/acked`); 0 while there is none.
    pub fn stored_ack(&self, prefix: &str) -> u64 {
        let out = self.etcdctl(&[
            "get",
            &format!("{prefix}/platform/acked"),
            "--print-value-only",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Compact etcd's history up to its current revision, as auto-compaction would; the
    /// revision compacted at.
    pub fn compact_now(&self) -> u64 {
        let out = self.etcdctl(&[
            "get",
            "/",
            "--prefix",
            "--keys-only",
            "--limit=1",
            "-w",
            "json",
        ]);
        let header: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let revision = header["header"]["revision"].as_u64().expect("revision");
        let compacted = self.etcdctl(&["compact", &revision.to_string()]);
        assert!(compacted.status.success(), "etcdctl compact: {compacted:?}");
        revision
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every member's log, for a failure message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for m in &self.members {
            let path: PathBuf = self.dir.path().join(format!("{}.log", m.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            all.push_str(&format!("--- {} (last 20 lines)\n", m.name));
            for line in tail.iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
