//! Private network namespaces for tests that must send multicast (RD multicast discovery,
//! mDNS): two namespaces joined by one veth pair, so nothing ever reaches the host's real
//! interfaces. Needs `ip` (iproute2) and CAP_SYS_ADMIN; where either is missing,
//! [`NetnsPair::create`] returns the reason and [`netns_or_skip`] applies the one skip policy
//! of `skip.rs` (a failure under `COAP_GATEWAY_NO_SKIPS`, which CI sets).
//!
//! Layout of a pair (the same addresses in every pair: each pair is its own world):
//! namespace `a` has `veth0` with 10.77.0.1/24 and fd77::1/64, namespace `b` has `veth0` with
//! 10.77.0.2/24 and fd77::2/64; both have `lo` up and a route for 224.0.0.0/4 via `veth0`, so
//! IPv4 multicast sent without choosing an interface leaves through the veth.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const A_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const B_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
pub const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
/// The veth's name inside each namespace.
pub const IFACE: &str = "veth0";

/// Which end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two namespaces and the veth between them; both are deleted on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `sysctl -w` inside namespace `ns`.
fn sysctl_in(ns: &str, setting: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sysctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "sysctl {setting} in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetnsPair {
    /// Create the pair; `Err` says why it could not be made (not root, no iproute2 ...).
    pub fn create(tag: &str) -> Result<NetnsPair, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}", std::process::id(), n);
        let pair = NetnsPair {
            a: format!("cgw-{tag}-{id}-a"),
            b: format!("cgw-{tag}-{id}-b"),
        };
        // Dropping `pair` on any error below removes what was made so far.
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        // Interface names are limited to 15 bytes and must be unique in the host namespace
        // until they are moved, hence the short numeric form.
        let short = (std::process::id() % 100_000) * 100 + n % 100;
        let (va, vb) = (format!("cgwa{short}"), format!("cgwb{short}"));
        ip(&[
            "link", "add", &va, "netns", &pair.a, "type", "veth", "peer", "name", &vb, "netns",
            &pair.b,
        ])?;
        for (ns, old, v4, v6) in [(&pair.a, &va, A_V4, A_V6), (&pair.b, &vb, B_V4, B_V6)] {
            ip(&["-n", ns, "link", "set", old, "name", IFACE])?;
            // No duplicate address detection on this private link: a tentative link-local
            // address would make the kernel pick the fd77:: address as the source of link-local
            // multicast for the first second or two, and tests would see the wrong address.
            sysctl_in(ns, &format!("net.ipv6.conf.{IFACE}.accept_dad=0"))?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", IFACE])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                IFACE,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", IFACE, "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", IFACE])?;
        }
        Ok(pair)
    }

    /// Give `side`'s veth one more address (`cidr`, e.g. "10.77.0.3/24" or "fd77::3/64"; IPv6
    /// without duplicate address detection, so it is usable at once).
    pub fn add_address(&self, side: Side, cidr: &str) {
        let mut args = vec!["-n", self.name(side), "addr", "add", cidr, "dev", IFACE];
        if cidr.contains(':') {
            args.push("nodad");
        }
        let out = Command::new("ip").args(&args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip addr add {cidr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn name(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// A command that runs `program` inside `side`'s namespace (`ip netns exec` execs the
    /// program in place, so the child's pid is the program's and `kill` reaches it).
    pub fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.arg("netns")
            .arg("exec")
            .arg(self.name(side))
            .arg(program);
        cmd
    }

    /// Run `f` on a fresh thread that has entered `side`'s namespace: sockets it creates
    /// belong to that namespace for their whole life, whichever thread uses them later.
    pub fn run_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let path = format!("/run/netns/{}", self.name(side));
        std::thread::spawn(move || -> std::io::Result<T> {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("thread in the namespace panicked"))?
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth, which destroys the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

/// A pair, or `None` after the skip is printed and recorded (a failure under
/// `COAP_GATEWAY_NO_SKIPS`, see `skip.rs`).
pub fn netns_or_skip(tag: &str) -> Option<NetnsPair> {
    match NetnsPair::create(tag) {
        Ok(pair) => Some(pair),
        Err(why) => {
            super::skip::skip(
                "its own network namespaces (ip netns, root)",
                &why.to_string(),
            );
            None
        }
    }
}
