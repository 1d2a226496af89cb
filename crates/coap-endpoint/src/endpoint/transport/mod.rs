//! The transport seam: how the endpoint's datagrams arrive and leave. The request pipeline
//! (`receive`, `server`, `reply`, `confirm`, `notify`) and the client see only a socket index,
//! datagrams and peer addresses; everything below that — sockets, batching, buffer sizing,
//! waiting for room in a full send buffer, multicast membership — is a [`Transport`].
//!
//! Two implementations: plain UDP (`udp`) and CoAP over DTLS (`dtls`, RFC 7252 §9), which
//! decrypts records into the same [`DatagramSink`] calls and encrypts what the pipeline sends;
//! the pipeline asks [`Transport::peer_identity`] who sent a request.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;

pub(super) mod dtls;
pub(super) mod udp;

/// Send what a receive batch produced from `socket`, up to `BATCH` datagrams per `sendmmsg`;
/// what the socket will not take now goes to `one_by_one` (the transport's own fallback, which
/// defers or drops). A datagram the kernel refuses (e.g. unreachable) is skipped.
#[cfg(target_os = "linux")]
pub(super) fn send_batched(
    socket: &tokio::net::UdpSocket,
    out: &[(Vec<u8>, SocketAddr)],
    mut one_by_one: impl FnMut(&[u8], SocketAddr),
) {
    use crate::batch_io::send_batch;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let fd = socket.as_raw_fd();
    let mut sent = 0;
    while sent < out.len() {
        match socket.try_io(Interest::WRITABLE, || send_batch(fd, &out[sent..])) {
            Ok(0) => sent += 1,
            Ok(k) => sent += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                for (bytes, peer) in &out[sent..] {
                    one_by_one(bytes, *peer);
                }
                break;
            }
            Err(e) => {
                log::debug!("coap: send to {} failed: {e}", out[sent].1);
                sent += 1;
            }
        }
    }
}

/// Where a transport delivers what it receives: the endpoint's pipeline for one socket.
pub(crate) trait DatagramSink: Send + Sync + 'static {
    /// One datagram from `peer`; `multicast` when it was sent to a group address.
    fn on_datagram(&self, bytes: &[u8], peer: SocketAddr, multicast: bool);
}

/// One bound local address of the endpoint.
pub(crate) trait Transport: Send + Sync + 'static {
    /// The local address datagrams arrive at and leave from.
    fn local_addr(&self) -> SocketAddr;

    /// Send without waiting: joined to the batch being received when called from the receive
    /// loop, sent at once otherwise; a full send buffer defers it (boundedly) rather than
    /// blocking the caller. Loss is possible, as for any datagram.
    /// Borrowed bytes are copied only when they must wait (in the batch or for room).
    fn send_now(&self, bytes: Cow<'_, [u8]>, peer: SocketAddr);

    /// Send, waiting for room: the client's and the endpoint's own confirmable messages.
    fn send<'a>(&'a self, bytes: &'a [u8], peer: SocketAddr) -> BoxFuture<'a, std::io::Result<()>>;

    /// The receive loop, delivering every datagram to `sink` until the transport fails or the
    /// task is aborted.
    fn receive(&self, sink: Arc<dyn DatagramSink>) -> BoxFuture<'static, ()>;

    /// Make sure `peer` can be sent to: over DTLS an established session, opened as client
    /// if there is none (with `identity`'s PSK, or the transport's certificate), within
    /// `deadline`. Plain UDP has nothing to do.
    fn connect<'a>(
        &'a self,
        peer: SocketAddr,
        identity: Option<Arc<str>>,
        deadline: std::time::Instant,
    ) -> BoxFuture<'a, std::io::Result<()>> {
        let _ = (peer, identity, deadline);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Forget `peer`'s session: it stopped answering (the device rebooted, or we did and it
    /// still talks to a session we lost), so the next exchange handshakes anew.
    fn reset(&self, peer: SocketAddr) {
        let _ = peer;
    }

    /// Whether what arrives is authenticated and encrypted (DTLS).
    fn is_secure(&self) -> bool {
        false
    }

    /// The authenticated identity of `peer`'s session; `None` on plain UDP.
    fn peer_identity(&self, peer: SocketAddr) -> Option<Arc<str>> {
        let _ = peer;
        None
    }

    /// Close every session whose identity `revoked` names; how many were closed.
    fn close_sessions(&self, revoked: &dyn Fn(&str) -> bool) -> usize {
        let _ = revoked;
        0
    }

    /// Join a multicast group on interface `ifindex` (RFC 7252 §8).
    fn join_multicast(&self, group: IpAddr, ifindex: u32) -> std::io::Result<()> {
        let _ = (group, ifindex);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this transport has no multicast",
        ))
    }
}

/// An error that says the peer cannot be reached (ICMP unreachable, no route), as opposed to a
/// failure of the local socket.
pub(crate) fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
    )
}
