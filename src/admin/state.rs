//! What the admin handlers read: the registry index (through `RegistryReader`, never the
//! actor's mailbox, so scrapes and page polls do not queue behind writes), and the two actors
//! they ask questions: the Registry (`GetHealth`) and, when configured, the PlatformLink
//! (`GetLinkStats`). Every question has a bounded wait, so a stuck actor makes `/health` say
//! so instead of hanging the HTTP request.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use super::activity::Activity;
use super::auth::AdminAuth;
use super::error::ApiError;
use super::events::EventHub;
use super::health::PlatformState;
use super::host_check::AllowedHosts;
use super::query::DeviceSelector;
use crate::coap::DtlsStats;
use crate::executer::Executer;
use crate::observer::Readings;
use crate::platform::{GetLinkStats, LinkStats, PlatformLink};
use crate::registry::{GetHealth, Registration, Registry, RegistryHealth, RegistryReader};

/// How long a handler waits for an actor's answer.
pub(crate) const ACTOR_WAIT: Duration = Duration::from_secs(1);

/// Shared by every admin worker thread (all handles are cheap clones and `Send`).
#[derive(Clone)]
pub struct AdminState {
    pub reader: RegistryReader,
    pub registry: Addr<Registry>,
    /// `None` when `platform.url` is empty.
    pub platform: Option<Addr<PlatformLink>>,
    /// The `Host` values answered (`http.allowed_hosts`; DNS-rebinding defence).
    pub allowed_hosts: AllowedHosts,
    /// The admin token, when `http.token_file` or `COAP_GATEWAY_HTTP_TOKEN` set one.
    pub auth: AdminAuth,
    /// The RD's coaps counters, read at each scrape; `None` when `dtls.listen` is empty.
    pub dtls: Option<Arc<DtlsStats>>,
    /// The registry's events for `/api/events`; `None`: that route answers 404.
    pub events: Option<Addr<EventHub>>,
    /// Runs the console's requests to devices (`admin::actions`); `None`: they answer 503.
    pub(crate) executer: Option<Addr<Executer>>,
    /// The Observer's latest values; `None` when no Observer runs.
    pub(crate) readings: Option<Readings>,
    /// The last hour of RD activity, sampled while the server runs.
    pub(crate) activity: Activity,
    /// What the gateway page lists as this gateway's listeners.
    pub(crate) listeners: Listeners,
}

/// The gateway's own addresses, for the console's gateway page.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Listeners {
    pub(crate) gateway_id: String,
    /// `udp://addr` and `coaps://addr` of the RD.
    pub(crate) coap: Vec<String>,
    /// `http://addr` or `https://addr` of this server (set when it binds).
    pub(crate) admin: Option<String>,
}

impl AdminState {
    /// A server over `reader` alone: no platform, no token, no event stream, no console
    /// actions (for benchmarks and tests of the read API).
    pub fn new(reader: RegistryReader, registry: Addr<Registry>) -> AdminState {
        AdminState {
            reader,
            registry,
            platform: None,
            allowed_hosts: AllowedHosts::default(),
            auth: AdminAuth::default(),
            dtls: None,
            events: None,
            executer: None,
            readings: None,
            activity: Activity::default(),
            listeners: Listeners::default(),
        }
    }

    /// The registration `selector` names, or a 404 naming the sectors the name has elsewhere.
    /// No `?d` (or an empty one) is the registration without a sector: a default meaning "the
    /// only sector the name has" could be blocked or redirected by a later registrant of the
    /// same name in another sector.
    pub(crate) fn registered(
        &self,
        selector: &DeviceSelector,
    ) -> Result<Arc<Registration>, ApiError> {
        if let Some(reg) = self.reader.find(&selector.ep, selector.d.as_ref()) {
            return Ok(reg);
        }
        let mut message = match &selector.d {
            Some(d) => format!(
                "no device {} in sector {}",
                selector.ep.as_str(),
                d.as_str()
            ),
            None => format!("no device {} without a sector", selector.ep.as_str()),
        };
        let elsewhere: Vec<String> = self
            .reader
            .find_ep(&selector.ep)
            .iter()
            .map(|r| r.d.as_ref().map_or("(none)", |d| d.as_str()).to_string())
            .collect();
        if !elsewhere.is_empty() {
            message.push_str(&format!(
                "; registered in sectors {}: name one with ?d=",
                elsewhere.join(", ")
            ));
        }
        Err(ApiError::not_found(message))
    }

    /// The Registry's write health; `None` when it did not answer within [`ACTOR_WAIT`].
    pub(crate) async fn registry_health(&self) -> Option<RegistryHealth> {
        match tokio::time::timeout(ACTOR_WAIT, self.registry.send(GetHealth)).await {
            Ok(Ok(health)) => Some(health),
            _ => None,
        }
    }

    /// The PlatformLink's counters; `None` when not configured or it did not answer.
    pub(crate) async fn link_stats(&self) -> Option<LinkStats> {
        let link = self.platform.as_ref()?;
        match tokio::time::timeout(ACTOR_WAIT, link.send(GetLinkStats)).await {
            Ok(Ok(stats)) => Some(stats),
            _ => None,
        }
    }

    /// The platform link as `/health` reports it.
    pub(crate) async fn platform_state(&self) -> PlatformState {
        if self.platform.is_none() {
            return PlatformState::NotConfigured;
        }
        match self.link_stats().await {
            Some(stats) => PlatformState::Stats(stats),
            None => PlatformState::NoAnswer,
        }
    }
}
