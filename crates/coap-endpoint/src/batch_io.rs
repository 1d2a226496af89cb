//! Batched datagram I/O for the receive loop on Linux: `recvmmsg` and `sendmmsg` move up to
//! [`BATCH`] datagrams per system call. On loopback the per-datagram syscalls, not CoAP
//! processing, dominate the cost of a request, so this is where throughput comes from.
//!
//! Each datagram also gets a small control buffer: on a socket with `IP_PKTINFO` /
//! `IPV6_RECVPKTINFO` enabled (only sockets that joined a multicast group, see `multicast.rs`)
//! the kernel reports the datagram's destination address there, which is how a request that
//! arrived by multicast is told apart (RFC 7252 §8.1). Without the option no control data
//! arrives and the cost is nil.
//!
//! Plain functions over a raw fd; the endpoint wraps them in tokio's `try_io` so readiness is
//! tracked correctly. The only `unsafe` is the FFI calls and sockaddr reinterpretation, each
//! on buffers this module owns and sizes.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

pub const BATCH: usize = 32;
/// Receive buffer per datagram. Larger datagrams arrive truncated and are flagged as such:
/// CoAP requests bigger than this must use Block1.
pub const DATAGRAM: usize = 8 * 1024;
/// Control bytes per datagram, in u64 words (cmsghdr alignment): room for one `in6_pktinfo`
/// (the larger of the two pktinfo structs) with its header, twice over.
const CONTROL_WORDS: usize = 16;

pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside are only meaningful during `recv`, which rebuilds them from
// the owned buffers on every call; the struct is moved between threads only between calls.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: vec![0u8; BATCH * DATAGRAM],
            // SAFETY: all-zero is a valid value for these plain C structs.
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            control: vec![0u64; BATCH * CONTROL_WORDS],
            iovecs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            msgs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Receive up to BATCH datagrams without blocking; `WouldBlock` when none is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i * DATAGRAM..].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.control[i * CONTROL_WORDS..].as_mut_ptr().cast();
            hdr.msg_controllen = CONTROL_WORDS * size_of::<u64>();
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: msgs/iovecs/addrs/bufs are live, sized BATCH, and point into owned memory.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last `recv`: bytes, sender, and whether it was truncated.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
        let len = (self.msgs[i].msg_len as usize).min(DATAGRAM);
        let truncated = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        (
            &self.bufs[i * DATAGRAM..i * DATAGRAM + len],
            from_storage(&self.addrs[i]),
            truncated,
        )
    }
}

impl RecvBatch {
    /// The destination address of datagram `i` (from IP_PKTINFO / IPV6_PKTINFO), when the
    /// socket asked for it.
    pub fn destination(&self, i: usize) -> Option<IpAddr> {
        let hdr = &self.msgs[i].msg_hdr;
        // SAFETY: `hdr` was filled by the last recvmmsg; msg_control points into
        // `self.control` and msg_controllen is what the kernel wrote, so the CMSG macros walk
        // only initialised, owned bytes.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
            while !cmsg.is_null() {
                let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
                let data = libc::CMSG_DATA(cmsg);
                if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                }
                if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                    let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
            }
        }
        None
    }
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage; we then fill the family-specific view.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Send `out` (bytes, destination) with as few `sendmmsg` calls as possible, without
/// blocking. Returns how many were handed to the kernel (a prefix of `out`).
pub fn send_batch(fd: RawFd, out: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let n = out.len().min(BATCH);
    let mut addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        out[..n].iter().map(|(_, a)| to_storage(a)).collect();
    let mut iovecs: Vec<libc::iovec> = out[..n]
        .iter()
        .map(|(b, _)| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { zeroed() }).collect();
    for i in 0..n {
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = (&mut addrs[i].0 as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = addrs[i].1;
        hdr.msg_iov = &mut iovecs[i];
        hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer refers to memory alive for the duration of the call.
    let sent =
        unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_round_trip_on_loopback() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let a = std::net::UdpSocket::bind(bind).unwrap();
            let b = std::net::UdpSocket::bind(bind).unwrap();
            let to = b.local_addr().unwrap();
            let out: Vec<(Vec<u8>, SocketAddr)> = (0..40u8).map(|i| (vec![i; 3], to)).collect();
            let mut done = 0;
            while done < out.len() {
                done += send_batch(a.as_raw_fd(), &out[done..]).unwrap();
            }
            let mut rb = RecvBatch::new();
            let mut got = Vec::new();
            let t0 = std::time::Instant::now();
            while got.len() < 40 && t0.elapsed().as_secs() < 2 {
                if let Ok(n) = rb.recv(b.as_raw_fd()) {
                    for i in 0..n {
                        let (bytes, from, truncated) = rb.get(i);
                        assert_eq!(from, Some(a.local_addr().unwrap()));
                        assert!(!truncated);
                        got.push(bytes[0]);
                    }
                }
            }
            assert_eq!(got, (0..40).collect::<Vec<u8>>());
            assert_eq!(
                RecvBatch::new().recv(b.as_raw_fd()).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
        }
    }

    #[test]
    fn destination_is_reported_only_when_asked_for() {
        for (bind, level, name) in [
            ("127.0.0.1:0", libc::IPPROTO_IP, libc::IP_PKTINFO),
            ("[::1]:0", libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        ] {
            let a = std::net::UdpSocket::bind(bind).unwrap();
            let b = std::net::UdpSocket::bind(bind).unwrap();
            let to = b.local_addr().unwrap();
            let mut rb = RecvBatch::new();
            let receive_one = |rb: &mut RecvBatch| {
                a.send_to(b"x", to).unwrap();
                let t0 = std::time::Instant::now();
                loop {
                    if let Ok(1) = rb.recv(b.as_raw_fd()) {
                        return rb.destination(0);
                    }
                    assert!(t0.elapsed().as_secs() < 2, "datagram lost");
                }
            };
            assert_eq!(receive_one(&mut rb), None);
            let on: libc::c_int = 1;
            // SAFETY: an int option on a live socket.
            let rc = unsafe {
                libc::setsockopt(
                    b.as_raw_fd(),
                    level,
                    name,
                    (&on as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
            assert_eq!(receive_one(&mut rb), Some(to.ip()));
        }
    }
}
