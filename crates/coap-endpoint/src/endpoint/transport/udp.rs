//! The UDP transport (RFC 7252 over plain UDP): one socket per bind address, its receive loop
//! (batched `recvmmsg`/`sendmmsg` on Linux: the answers to a batch leave together) and every
//! send, with a bounded deferral when the socket's send buffer is full.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::UdpSocket;

use super::{DatagramSink, Transport};
use crate::codec::{self, encode_empty, MsgType};
use crate::endpoint::lock;

/// Datagrams that may wait for room in a full socket buffer at once, over all of an
/// endpoint's sockets (~ 8 MB of responses at the 1 KiB block size).
pub(crate) const MAX_DEFERRED_SENDS: usize = 8_192;

/// An outgoing datagram waiting for the receive loop's batched send.
type Queued = (Vec<u8>, SocketAddr);

/// What the receive loop and the deferred sends share.
struct UdpIo {
    socket: UdpSocket,
    local: SocketAddr,
    /// `Some` while the receive loop processes a batch: sends are queued and leave together
    /// in one `sendmmsg` when the batch is done. Checked under the same lock by other tasks,
    /// so nothing is queued after the flush.
    outbox: Mutex<Option<Vec<Queued>>>,
    /// Datagrams waiting on a task for room in a full socket buffer, counted endpoint-wide.
    deferred_sends: Arc<AtomicUsize>,
}

/// One bound UDP socket.
pub(crate) struct UdpTransport {
    io: Arc<UdpIo>,
}

impl UdpTransport {
    /// Bind `addr` (IPv6 sockets `IPV6_V6ONLY`), asking `buffer` bytes of socket buffer;
    /// `deferred_sends` is the endpoint-wide count of sends waiting for room.
    pub(crate) fn bind(
        addr: SocketAddr,
        buffer: Option<usize>,
        deferred_sends: Arc<AtomicUsize>,
    ) -> std::io::Result<UdpTransport> {
        let socket = UdpSocket::from_std(bind_one(addr, buffer)?)?;
        let local = socket.local_addr()?;
        Ok(UdpTransport {
            io: Arc::new(UdpIo {
                socket,
                local,
                outbox: Mutex::new(None),
                deferred_sends,
            }),
        })
    }
}

impl Transport for UdpTransport {
    fn local_addr(&self) -> SocketAddr {
        self.io.local
    }

    fn send_now(&self, bytes: Cow<'_, [u8]>, peer: SocketAddr) {
        if let Some(queue) = lock(&self.io.outbox).as_mut() {
            queue.push((bytes.into_owned(), peer));
            return;
        }
        self.io.send_unbatched(&bytes, peer);
    }

    fn send<'a>(&'a self, bytes: &'a [u8], peer: SocketAddr) -> BoxFuture<'a, std::io::Result<()>> {
        async move { self.io.socket.send_to(bytes, peer).await.map(|_| ()) }.boxed()
    }

    fn receive(&self, sink: Arc<dyn DatagramSink>) -> BoxFuture<'static, ()> {
        recv_loop(Arc::clone(&self.io), sink).boxed()
    }

    #[cfg(target_os = "linux")]
    fn join_multicast(&self, group: IpAddr, ifindex: u32) -> std::io::Result<()> {
        crate::multicast::join(&self.io.socket, group, ifindex)
    }
}

/// Ask the kernel for `bytes` of receive and send buffer. An unprivileged process gets at most
/// `net.core.rmem_max`/`wmem_max`; with CAP_NET_ADMIN the FORCE options lift that cap. Less
/// than asked is logged once per socket, with the fix, since a burst beyond it is lost silently.
/// `None`: 4 MiB as far as the kernel allows, quietly (endpoints without a config).
fn size_buffers(socket: &socket2::Socket, addr: SocketAddr, bytes: Option<usize>) {
    let Some(bytes) = bytes else {
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        return;
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: setsockopt on an open socket with a c_int value of the right size; a
            // refusal (EPERM without CAP_NET_ADMIN) changes nothing.
            unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    std::ptr::addr_of!(value).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
    // The kernel doubles what it grants (bookkeeping); it reports the doubled value.
    if socket.recv_buffer_size().is_ok_and(|got| got < bytes) {
        let _ = socket.set_recv_buffer_size(bytes);
    }
    if socket.send_buffer_size().is_ok_and(|got| got < bytes) {
        let _ = socket.set_send_buffer_size(bytes);
    }
    if let Ok(got) = socket.recv_buffer_size() {
        if got < bytes {
            log::warn!(
                "coap: {addr}: the kernel granted a {got}-byte receive buffer of the \
                 {bytes} asked (coap.socket_buffer_bytes); datagrams of a burst beyond it are \
                 dropped unseen. Raise net.core.rmem_max (sysctl) or grant CAP_NET_ADMIN"
            );
        }
    }
}

pub(super) fn bind_one(
    addr: SocketAddr,
    buffer: Option<usize>,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // So that 0.0.0.0:P and [::]:P can both be bound.
        socket.set_only_v6(true)?;
    }
    #[cfg(target_os = "linux")]
    crate::multicast::only_own_groups(&socket, addr.is_ipv4());
    // Absorb bursts: a fleet notifying in lockstep, many devices re-registering at once.
    // Beyond the buffer the kernel drops datagrams before the gateway sees them.
    size_buffers(&socket, addr, buffer);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl UdpIo {
    fn send_unbatched(self: &Arc<Self>, bytes: &[u8], peer: SocketAddr) {
        match self.socket.try_send_to(bytes, peer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A full socket buffer: wait for room on a task, but only for so many datagrams
                // (no unbounded queue). Beyond that the datagram is lost like any UDP
                // datagram; a CON's retransmission is answered from the deduplication cache.
                if self.deferred_sends.fetch_add(1, Ordering::AcqRel) >= MAX_DEFERRED_SENDS {
                    self.deferred_sends.fetch_sub(1, Ordering::AcqRel);
                    log::debug!("coap: send buffer full, response to {peer} dropped");
                    return;
                }
                let io = Arc::clone(self);
                let bytes = bytes.to_vec();
                tokio::spawn(async move {
                    let _ = io.socket.send_to(&bytes, peer).await;
                    io.deferred_sends.fetch_sub(1, Ordering::AcqRel);
                });
            }
            Err(e) => log::debug!("coap: send to {peer} failed: {e}"),
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn recv_loop(io: Arc<UdpIo>, sink: Arc<dyn DatagramSink>) {
    // The largest UDP payload: a datagram must never be truncated into a "valid" message.
    let mut buf = vec![0u8; 65_536];
    loop {
        let socket = &io.socket;
        // Drain what is queued before sleeping again: one readiness wake-up per burst.
        match socket.try_recv_from(&mut buf) {
            Ok((n, peer)) => {
                sink.on_datagram(&buf[..n], peer, false);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::debug!("coap: receive error on {}: {e}", io.local);
                continue;
            }
        }
        if let Err(e) = socket.readable().await {
            log::warn!("coap: socket {} failed: {e}", io.local);
            return;
        }
    }
}

/// Linux: receive up to 32 datagrams per `recvmmsg`, handle them, and send every answer of
/// the batch with `sendmmsg`.
#[cfg(target_os = "linux")]
async fn recv_loop(io: Arc<UdpIo>, sink: Arc<dyn DatagramSink>) {
    use crate::batch_io::RecvBatch;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let ctx = &io;
    let fd = ctx.socket.as_raw_fd();
    let mut batch = RecvBatch::new();
    loop {
        match ctx.socket.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => {
                *lock(&ctx.outbox) = Some(Vec::with_capacity(n));
                for i in 0..n {
                    let (bytes, peer, truncated) = batch.get(i);
                    let Some(peer) = peer else { continue };
                    let multicast = batch.destination(i).is_some_and(|d| d.is_multicast());
                    if truncated {
                        // Too big to have been read whole: reject a CON (RFC 7252 §4.2), the
                        // client should have used Block1. Never a RST to multicast (§8.1).
                        if let (Some((MsgType::Con, _, mid)), false) =
                            (codec::peek(bytes), multicast)
                        {
                            lock(&ctx.outbox)
                                .get_or_insert_with(Vec::new)
                                .push((encode_empty(MsgType::Rst, mid).to_vec(), peer));
                        }
                        continue;
                    }
                    sink.on_datagram(bytes, peer, multicast);
                }
                let out = lock(&ctx.outbox).take().unwrap_or_default();
                super::send_batched(&ctx.socket, &out, |bytes, peer| {
                    io.send_unbatched(bytes, peer)
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = ctx.socket.readable().await {
                    log::warn!("coap: socket {} failed: {e}", ctx.local);
                    return;
                }
            }
            Err(e) => log::debug!("coap: receive error on {}: {e}", ctx.local),
        }
    }
}
