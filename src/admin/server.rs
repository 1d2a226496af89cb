//! Binds and runs the admin HTTP server (actix-web 4) next to the gateway's actors, and stops
//! it gracefully within a bound. Called by `gateway::start` / `gateway::run`.
//!
//! The server runs its own worker threads (actix-web's), so a slow HTTP client or a large
//! device listing never occupies the thread of the RD or the Registry. Signals are left to
//! the gateway, which stops this server first on shutdown.
//!
//! Middleware, outermost first: the `Host` check (421), then the bearer check (401, only
//! when a token is configured; see `auth`). Plain HTTP, or HTTPS on a rustls config (`tls`).

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{ServerHandle, ServiceRequest};
use actix_web::http::header::{AUTHORIZATION, HOST};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};

use super::auth::{self, AdminAuth, Verdict};
use super::error::AdminError;
use super::handlers;
use super::state::AdminState;
use super::tls::AdminTls;

/// Two workers: one slow request (a full listing) never blocks `/health` or `/metrics`.
const WORKERS: usize = 2;
/// How long a graceful stop lets requests in progress finish.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(2);

/// Requests refused for their `Host` (DNS rebinding): one log line per 10 s.
static MISDIRECTED_LOG: crate::limits::LogThrottle = crate::limits::LogThrottle::new();

/// Requests refused for a missing or wrong token: one log line per 10 s, never the header.
static UNAUTHORIZED_LOG: crate::limits::LogThrottle = crate::limits::LogThrottle::new();

/// The `Host` header, or the authority of an absolute-form request target; `None` when the
/// request has neither. A header that is not text is kept as a value that never matches.
fn host_of(req: &ServiceRequest) -> Option<&str> {
    match req.headers().get(HOST) {
        Some(value) => Some(value.to_str().unwrap_or("\u{fffd}")),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// 421 Misdirected Request (RFC 9110 §15.5.20), with the API's JSON error shape.
fn misdirected() -> HttpResponse {
    if let Some(n) = MISDIRECTED_LOG.note() {
        log::warn!(
            "admin http: {n} request(s) refused with 421 for a Host header that is not an address, localhost or in http.allowed_hosts (DNS rebinding?)"
        );
    }
    HttpResponse::MisdirectedRequest().json(serde_json::json!({
        "error": "unknown Host: use an address, localhost, or a name in http.allowed_hosts"
    }))
}

/// 401 for a request without the right token (see `auth::unauthorized`), counted in the log.
fn unauthorized(verdict: Verdict) -> HttpResponse {
    if let Some(n) = UNAUTHORIZED_LOG.note() {
        log::warn!("admin http: {n} request(s) refused with 401 (missing or wrong admin token)");
    }
    auth::unauthorized(verdict)
}

/// A running admin server.
pub struct RunningAdmin {
    addr: SocketAddr,
    handle: ServerHandle,
    /// Samples the activity charts' counters while the server runs.
    sampler: actix_rt::task::JoinHandle<()>,
}

/// Bind `listen` and start serving plain HTTP; see [`bind`] and [`start_on`].
pub fn start(listen: SocketAddr, state: AdminState) -> Result<RunningAdmin, AdminError> {
    start_on(bind(listen)?, state, None)
}

/// Bind the admin listener. Separate from [`start_on`] so the gateway can bind it before any
/// actor runs: a taken port is then refused while there is nothing to unwind.
pub(crate) fn bind(listen: SocketAddr) -> Result<std::net::TcpListener, AdminError> {
    // std sets SO_REUSEADDR on Unix, as actix-web's own `bind` does.
    std::net::TcpListener::bind(listen).map_err(|source| AdminError::Bind {
        addr: listen,
        source,
    })
}

/// Start serving on a bound listener, over TLS when `tls` is set; logs `admin http listening
/// on http://ADDR` (or `https://`) with the bound address (port 0 resolved). Must be called
/// inside a running actix system.
pub(crate) fn start_on(
    listener: std::net::TcpListener,
    state: AdminState,
    tls: Option<AdminTls>,
) -> Result<RunningAdmin, AdminError> {
    // The kernel resolved port 0 at bind time.
    let addr = listener.local_addr().map_err(AdminError::Serve)?;
    if !state.auth.required() && !addr.ip().is_loopback() {
        log::warn!(
            "admin http on {addr} is not a loopback address and has no token: anyone who reaches it reads every registration (set http.token_file or COAP_GATEWAY_HTTP_TOKEN)"
        );
    }
    let allowed = state.allowed_hosts.clone();
    let auth = state.auth.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut state = state;
    state.listeners.admin = Some(format!("{scheme}://{addr}"));
    let sampler = state.activity.run();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let allowed = allowed.clone();
        let auth = auth.clone();
        App::new()
            // Inner: runs after the Host check below.
            .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
                let verdict = if AdminAuth::is_open(req.method(), req.path()) {
                    Verdict::Allowed
                } else {
                    auth.check(req.headers().get(AUTHORIZATION))
                };
                async move {
                    if verdict != Verdict::Allowed {
                        return Ok(req.into_response(unauthorized(verdict)));
                    }
                    next.call(req).await
                }
            }))
            .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
                let refused = !allowed.allows(host_of(&req));
                async move {
                    if refused {
                        return Ok(req.into_response(misdirected()));
                    }
                    next.call(req).await
                }
            }))
            .app_data(data.clone())
            .configure(handlers::configure)
    })
    .workers(WORKERS)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_BUDGET.as_secs());
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls.server_config()),
        None => server.listen(listener),
    }
    .map_err(|e| {
        sampler.abort();
        AdminError::Serve(e)
    })?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(e) = server.await {
            log::error!("admin http server failed: {e}");
        }
    });
    log::info!("admin http listening on {scheme}://{addr}");
    Ok(RunningAdmin {
        addr,
        handle,
        sampler,
    })
}

impl RunningAdmin {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let requests in progress finish within the shutdown budget, stop.
    /// Bounded even if a worker does not come back.
    pub async fn shutdown(self) {
        self.sampler.abort();
        let stop = self.handle.stop(true);
        if tokio::time::timeout(SHUTDOWN_BUDGET + Duration::from_secs(1), stop)
            .await
            .is_err()
        {
            log::warn!("admin http server did not stop in time");
        }
    }
}
