//! Multicast membership for the endpoint's sockets (RFC 7252 §8, Linux only): joining a group
//! on an interface, and the socket options that let the receive loop recognise a request that
//! arrived by multicast. Called by `Endpoint::join_multicast` (socket options) and by whoever
//! decides the interfaces (`rd::multicast`, through [`resolve_interfaces`]).
//!
//! Why the existing sockets and IP_PKTINFO, not extra sockets bound to the group addresses:
//! a socket bound to the unspecified address on the CoAP port (the RD's default `0.0.0.0:5683`
//! / `[::]:5683`) already receives datagrams sent to any group it joined, so joining on it
//! needs no second socket on the same port (which would need SO_REUSEADDR on both, letting any
//! local process bind the RD's port too) and answers leave from the RD's own unicast address
//! and port, which is where a client must send its registration next. IP_PKTINFO /
//! IPV6_RECVPKTINFO give each datagram's destination address, so "arrived by multicast" is a
//! fact read from the packet, not inferred from which socket it came in on.
//!
//! Every endpoint socket also gets IP_MULTICAST_ALL / IPV6_MULTICAST_ALL off: by default Linux
//! delivers to a wildcard-bound socket the traffic of every group *any* socket on the host
//! joined, so another CoAP program's membership would make the RD see (and, without this
//! module, answer as unicast) multicast it never asked for.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use tokio::net::UdpSocket;

/// `IPV6_MULTICAST_ALL` (linux/in6.h, since Linux 4.20); not exported by libc for glibc.
const IPV6_MULTICAST_ALL: libc::c_int = 29;

fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    on: bool,
) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: a plain int option on a valid fd; the pointer and length describe `value`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Receive only the groups this socket joined itself (see the module doc). Best effort:
/// kernels before 4.20 lack the IPv6 option, and a socket that joins nothing is unaffected.
pub(crate) fn only_own_groups(socket: &impl AsRawFd, ipv4: bool) {
    let result = if ipv4 {
        set_int(socket, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, false)
    } else {
        set_int(socket, libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL, false)
    };
    if let Err(e) = result {
        log::debug!("coap: cannot restrict multicast delivery to joined groups: {e}");
    }
}

/// Join `group` on interface `ifindex` with `socket`, and make the socket report destination
/// addresses (so the receive loop can flag multicast requests). Our own multicast sends are
/// not looped back to us: the RD must not discover itself.
pub(crate) fn join(socket: &UdpSocket, group: IpAddr, ifindex: u32) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    match group {
        IpAddr::V4(g) => {
            set_int(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, true)?;
            sock.set_multicast_loop_v4(false)?;
            sock.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))
        }
        IpAddr::V6(g) => {
            set_int(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, true)?;
            sock.set_multicast_loop_v6(false)?;
            sock.join_multicast_v6(&g, ifindex)
        }
    }
}

/// A network interface to join groups on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

/// Why interfaces could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("no interface named {0:?}")]
    Unknown(String),
    #[error("cannot list network interfaces: {0}")]
    List(io::Error),
}

/// The interfaces named in `names`, each of which must exist; with no names, every interface
/// that is up, multicast-capable and not loopback (possibly none: the caller says so).
pub fn resolve_interfaces(names: &[String]) -> Result<Vec<Interface>, InterfaceError> {
    if names.is_empty() {
        return multicast_capable().map_err(InterfaceError::List);
    }
    names
        .iter()
        .map(|name| {
            index_of(name)
                .map(|index| Interface {
                    name: name.clone(),
                    index,
                })
                .ok_or_else(|| InterfaceError::Unknown(name.clone()))
        })
        .collect()
}

/// The kernel's index of interface `name` (the scope id of a link-local address).
pub fn index_of(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Interfaces that are up, multicast-capable and not loopback, in the kernel's order.
fn multicast_capable() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found: Vec<Interface> = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let flags = entry.ifa_flags as libc::c_int;
        let wanted = flags & libc::IFF_UP != 0
            && flags & libc::IFF_MULTICAST != 0
            && flags & libc::IFF_LOOPBACK == 0;
        if !wanted || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // The list has one node per address (and one per link): keep each interface once.
        if found.iter().any(|i| i.name == name) {
            continue;
        }
        if let Some(index) = index_of(&name) {
            found.push(Interface { name, index });
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_resolved_by_name_and_never_chosen_by_default() {
        let lo = resolve_interfaces(&["lo".to_string()]).unwrap();
        assert_eq!(lo.len(), 1);
        assert!(lo[0].index > 0);
        let auto = resolve_interfaces(&[]).unwrap();
        assert!(auto.iter().all(|i| i.name != "lo"), "{auto:?}");
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let err = resolve_interfaces(&["lo".into(), "no-such-if0".into()]).unwrap_err();
        assert!(err.to_string().contains("no-such-if0"), "{err}");
    }
}
