//! The admin HTTP server: lets operators look inside a running gateway without
//! stopping it, and wires it into monitoring. Started by `gateway::start` when `http.listen` is
//! non-empty; stopped first on shutdown.
//!
//! Endpoints (actix-web 4; HTTPS when `http.tls_cert_file`/`tls_key_file` are set, [`tls`]):
//! - `GET /health`: JSON summary; 503 when the registry cannot write ([`health`]).
//! - `GET /metrics`: Prometheus text format 0.0.4, rendered by [`crate::metrics::render`].
//! - `GET /api/devices` (paged, the RD's lookup filters as query parameters) and
//!   `GET /api/devices/{ep}[?d=]` ([`query`], [`device`]).
//! - `GET /`: the live status page ([`status_page`]).
//!
//! Every request first passes [`host_check`]: a `Host` that is neither a literal address,
//! `localhost` nor in `http.allowed_hosts` gets 421 (DNS rebinding). Then, when an admin token
//! is configured, [`auth`]: everything but `/health` and the status page's shell needs
//! `Authorization: Bearer <token>` (401 otherwise). Without a token the API is open: keep it
//! on localhost.
//!
//! Files: `server` (bind, run, stop), `handlers` (thin actix-web handlers), `state` (the
//! handles the handlers read, with bounded waits on actors), `auth` (the bearer check),
//! `tls` (certificate and key into a rustls config), and pure shaping that knows
//! nothing of HTTP: `query` (query string to RD filters and paging), `device` (a page of device objects),
//! `health` (health JSON), `error` (errors); metric inputs come from `metrics::ScrapeInputs`.

pub(crate) mod actions;
pub(crate) mod activity;
pub(crate) mod auth;
pub(crate) mod device;
pub(crate) mod device_detail;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod gateway_view;
pub(crate) mod handlers;
pub(crate) mod health;
pub(crate) mod host_check;
pub(crate) mod pages;
pub(crate) mod query;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod status_page;
pub(crate) mod tls;

pub(crate) use activity::Activity;
pub use auth::AdminAuth;
pub use error::AdminError;
pub use events::EventHub;
pub use host_check::AllowedHosts;
pub(crate) use server::{bind, start_on};
pub use server::{start, RunningAdmin};
pub use state::AdminState;
pub(crate) use state::Listeners;
pub use tls::AdminTls;
