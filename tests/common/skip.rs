//! One policy for tests that need something the machine may lack (network namespaces, a mount
//! namespace, `::1`, an external peer such as `coap-client-notls` or `chromium`).
//!
//! A test that cannot run must not pass silently (issue 27). With `COAP_GATEWAY_NO_SKIPS` set
//! (`scripts/test.sh` sets it whenever `CI` is set, and a developer can set it too) a missing
//! requirement fails the test. Otherwise the test prints `SKIPPED: ...` and returns, and the skip
//! is appended to the file named by `COAP_GATEWAY_SKIP_LOG` (set by `scripts/test.sh`), which
//! the script counts and lists after the run: a skip is never counted as a silent pass.
#![allow(dead_code)]

use std::io::Write;

/// Whether skips are forbidden in this run.
pub fn skips_forbidden() -> bool {
    std::env::var_os("COAP_GATEWAY_NO_SKIPS").is_some()
}

/// `what` is missing (`why` says how it failed): fail the test where skips are forbidden,
/// otherwise print and record the skip. Returns so the caller can `return` from the test.
pub fn skip(what: &str, why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    if skips_forbidden() {
        panic!("{test} needs {what}, which is unavailable here ({why}); COAP_GATEWAY_NO_SKIPS forbids skipping");
    }
    eprintln!("SKIPPED: {test} needs {what}: {why}");
    if let Some(path) = std::env::var_os("COAP_GATEWAY_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let binary = std::env::args().next().unwrap_or_default();
            let binary = binary.rsplit('/').next().unwrap_or_default().to_string();
            let _ = writeln!(f, "{binary} {test}: needs {what}: {why}");
        }
    }
}

/// Whether the external program `name` is on PATH; if not, [`skip`] (a failure under
/// `COAP_GATEWAY_NO_SKIPS`).
pub fn require_tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        skip(name, "not on PATH (scripts/test.sh installs it)");
    }
    found
}

/// Whether this machine can bind UDP on `::1`; if not, [`skip`].
pub fn require_ipv6_loopback() -> bool {
    match std::net::UdpSocket::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            skip("UDP on ::1", &e.to_string());
            false
        }
    }
}
