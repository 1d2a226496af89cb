//! The gateway host's own IP addresses: what a registration `base` must not name unless the
//! registrant is on this host itself (rule in `rd::resolve`).
//!
//! "Own" means every address the kernel delivers locally: loopback (127.0.0.0/8, `::1`), the
//! unspecified addresses (`0.0.0.0/8`, `::`, which a socket sends to as to itself), and every
//! address on one of the host's interfaces (getifaddrs). The RD's and the admin API's listen
//! addresses need no separate list: a specific listen address is an interface address (it
//! could not be bound otherwise), and a wildcard one listens on all of them. Interface
//! addresses also cover services of other programs on the host, which are exactly what a
//! foreign base must not reach. An IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! The interface list is read at most once per [`REFRESH`] and only when a check needs it
//! (a base that is neither loopback nor the registrant's own address), so a registration flood
//! does not become a flood of netlink dumps; an address added in the last [`REFRESH`] may be
//! missed once.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a read of the interface addresses is reused.
pub(crate) const REFRESH: Duration = Duration::from_secs(2);

/// The address with an IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) taken as IPv4: the kernel
/// sends to it as to the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Loopback or unspecified: the host itself whatever its interfaces are (0.0.0.0/8 is "this
/// host on this network", RFC 1122 §3.2.1.3).
pub(crate) fn is_loopback_or_unspecified(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}

/// Whether `ip` is this host: loopback, unspecified, or an address of one of its interfaces.
pub(crate) fn is_own(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    is_loopback_or_unspecified(ip) || interface_addrs().contains(&ip)
}

static CACHE: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>> = Mutex::new(None);

/// The addresses of the host's interfaces, at most [`REFRESH`] old. A failed read yields the
/// last known list (or none): loopback and unspecified are refused without it.
fn interface_addrs() -> Arc<Vec<IpAddr>> {
    let mut cache = match CACHE.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((at, addrs)) = cache.as_ref() {
        if at.elapsed() < REFRESH {
            return Arc::clone(addrs);
        }
    }
    let addrs = match read_interface_addrs() {
        Ok(list) => Arc::new(list),
        Err(e) => {
            log::warn!("cannot list the host's addresses: {e}");
            cache
                .as_ref()
                .map(|(_, a)| Arc::clone(a))
                .unwrap_or_default()
        }
    };
    *cache = Some((Instant::now(), Arc::clone(&addrs)));
    addrs
}

#[cfg(target_os = "linux")]
fn read_interface_addrs() -> std::io::Result<Vec<IpAddr>> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    // The list is finite (one node per address and link); the bound only guards a corrupt one.
    let mut budget = 65_536;
    while !cursor.is_null() && budget > 0 {
        budget -= 1;
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: AF_INET means a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Elsewhere only loopback and unspecified addresses are known to be the host.
#[cfg(not(target_os = "linux"))]
fn read_interface_addrs() -> std::io::Result<Vec<IpAddr>> {
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_and_unspecified_in_every_form() {
        for own in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:0.0.0.0",
        ] {
            assert!(is_loopback_or_unspecified(ip(own)), "{own}");
            assert!(is_own(ip(own)), "{own}");
        }
        for other in ["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1"] {
            assert!(!is_loopback_or_unspecified(ip(other)), "{other}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_interface_list_holds_loopback() {
        // Every Linux network namespace has `lo`; its address is listed once it is up, which
        // it is wherever these tests can run at all.
        let addrs = read_interface_addrs().unwrap();
        assert!(addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
        assert_eq!(canonical(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
