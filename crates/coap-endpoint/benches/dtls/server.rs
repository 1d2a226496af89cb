//! The server under test: one [`Endpoint`] with a plain and a DTLS socket on 127.0.0.1 and a
//! trivial handler, on a current-thread runtime of its own thread (as the gateway's actix-rt
//! arbiter runs its endpoint). Its thread id is kept so the bench can read the CPU time the
//! server spent (`/proc/self/task/TID/schedstat`), a figure the other load on a shared
//! machine does not distort as much as a rate.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use coap_endpoint::{
    Code, DtlsServerConfig, DtlsStats, Endpoint, HandlerFuture, InboundRequest, NoHooks,
    OutboundResponse, PskStore, RequestHandler, TransmissionParams,
};
use futures::FutureExt;
use tokio::sync::oneshot;

use crate::client::PSK_KEY;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Every `dev-N` identity has the bench's key; anything else is unknown.
struct BenchKeys;

impl PskStore for BenchKeys {
    fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize> {
        if !identity.starts_with(b"dev-") {
            return None;
        }
        out.get_mut(..PSK_KEY.len())?.copy_from_slice(PSK_KEY);
        Some(PSK_KEY.len())
    }
}

/// Answers every request with 2.05 "ok".
struct Trivial;

impl RequestHandler for Trivial {
    fn handle(&self, _req: InboundRequest) -> HandlerFuture {
        futures::future::ready(OutboundResponse::new(Code::CONTENT).with_payload(0, b"ok".to_vec()))
            .boxed()
    }
}

/// The server's DTLS settings for the bench: PSK and (when given) certificates, room for
/// `max_sessions`, no per-source handshake rate (every client is 127.0.0.1).
pub fn config(
    certificates: Option<coap_endpoint::CertificateFiles>,
    max_sessions: usize,
) -> DtlsServerConfig {
    DtlsServerConfig {
        psk: Some(Arc::new(BenchKeys)),
        certificates,
        max_sessions,
        handshake_rate_per_s: 0.0,
        exempt_loopback: true,
        ..DtlsServerConfig::default()
    }
}

pub struct Server {
    pub plain: SocketAddr,
    pub secure: SocketAddr,
    pub stats: Arc<DtlsStats>,
    tid: i64,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind and serve until [`Server::stop`] or `lifetime`, whichever is first.
    pub fn start(config: DtlsServerConfig, lifetime: Duration) -> R<Server> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("coap-server".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let plain: SocketAddr = ([127, 0, 0, 1], 0).into();
                    let secure = [plain];
                    let ep = match Endpoint::bind_secure(
                        &[plain],
                        Some((&secure, &config)),
                        TransmissionParams::default(),
                        Arc::new(Trivial),
                        Arc::new(NoHooks),
                    )
                    .await
                    {
                        Ok(ep) => ep,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let addrs = (ep.local_addrs(), ep.secure_addrs(), ep.dtls_stats(), tid);
                    let _ = ready_tx.send(Ok(addrs));
                    let _ = tokio::time::timeout(lifetime, stop_rx).await;
                    ep.shutdown().await;
                });
            })?;
        let (plain, secure, stats, tid) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("server did not start: {e}"))??;
        let (Some(&plain), Some(&secure)) = (plain.first(), secure.first()) else {
            return Err("server bound no address".into());
        };
        Ok(Server {
            plain,
            secure,
            stats,
            tid,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Nanoseconds the server's thread has been on a CPU.
    pub fn cpu_ns(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", self.tid))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn completed(&self) -> u64 {
        self.stats.handshakes_completed.load(Ordering::Relaxed)
    }

    /// Sessions that left OpenSSL for the endpoint's own record layer.
    pub fn compacted(&self) -> u64 {
        self.stats.sessions_compacted.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> u64 {
        self.stats.sessions.load(Ordering::Relaxed)
    }

    /// Wait (boundedly) until the session table holds `want` sessions.
    pub fn wait_sessions(&self, want: impl Fn(u64) -> bool, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if want(self.sessions()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        want(self.sessions())
    }

    pub fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
