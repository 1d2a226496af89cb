//! The Discovery actor: on start and every `discovery.interval_s` it sends
//! `GET /.well-known/core` (Accept: 40, RFC 6690 §4) to every configured target through the
//! RD's `CoapClient`, and registers each device that answers on its behalf (RFC 9176 §5,
//! third-party registration): its Limited Link Format links (Appendix C), `base` =
//! `coap://addr:port`, the endpoint attribute `src=discovery`, and `discovery.lifetime_s`, which
//! the next round refreshes. A device that stops answering is simply not refreshed and expires.
//!
//! Started by `gateway::start` when `discovery.enabled`. It writes only through the Registry's
//! `RegisterDiscovered`, which refuses to replace a registration the device made itself; a
//! device whose address already holds a self-registration (under any name) is not asked at all.
//! A round runs as one future on the actor's context with at most `max_in_flight` requests
//! outstanding; a round still running when the next is due makes that one skip.
//!
//! Multicast targets (`224.0.1.187`, `[ff02::fd%eth0]`): each round first sends one NON
//! `GET /.well-known/core` to every group (RFC 7252 §8.1) and collects, for `timeout`, the
//! members that answer from their unicast addresses (they wait up to their leisure, §8.2, so
//! the timeout must exceed it); each member is then asked and registered like a unicast target,
//! by unicast, so Block2 and every check apply unchanged.

//!
//! With `discovery.mdns`, `dnssd::browse` adds the address of every `_coap._udp` service it
//! resolves (`AddMdnsTarget`): it is asked at once and then in every round like a
//! configured target, until its service is withdrawn (`RemoveMdnsTarget`); its registration
//! then expires with its lifetime.
//!
//! Replicas on etcd: every replica runs Discovery, and each address (unicast, group, or found
//! by mDNS) is asked only by the replica that owns `discovery/<address>` by the rendezvous
//! rule of `registry::etcd::ownership`, so a device is asked once per round, not once per
//! replica; a replica that dies hands its addresses to the others with its registrations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::stream::{self, StreamExt};
use log::{debug, info, warn};

use super::naming::endpoint_name;
use super::targets::{GroupTarget, TargetError};
use crate::coap::{ClientRequest, CoapClient, Code};
use crate::limits::LogThrottle;
use crate::pinger::ping_target;
use crate::rd::register::{check_limited_link, parse_link_payload};
use crate::rd::LINK_FORMAT;
use crate::registry::etcd::Ownership;
use crate::registry::{
    is_discovered, DiscoveredOutcome, Register, RegisterDiscovered, Registry, RegistryReader,
    Remove, DISCOVERED_MARKER,
};
use crate::time::now_ms;
use link_format::{Link, Param};

/// The Discovery actor's knobs, from `discovery.*` in the config.
#[derive(Debug, Clone)]
pub(crate) struct DiscoverySettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub lifetime_s: u32,
    pub max_in_flight: usize,
    /// Every address asked each round, expanded from `discovery.targets`.
    pub targets: Vec<SocketAddr>,
    /// Multicast groups asked each round (IPv6 link-local ones with their scope id).
    pub groups: Vec<SocketAddr>,
    /// Targets asked over DTLS, with their identity (`coaps://IDENTITY@…`).
    pub secure: HashMap<SocketAddr, Arc<str>>,
}

/// A group as a socket address: an IPv6 group's interface becomes its scope id.
pub(crate) fn group_addr(g: &GroupTarget) -> Result<SocketAddr, TargetError> {
    match (g.ip, &g.interface) {
        (IpAddr::V6(ip), Some(name)) => {
            #[cfg(target_os = "linux")]
            let index = crate::coap::multicast::index_of(name);
            #[cfg(not(target_os = "linux"))]
            let index = None;
            let index = index.ok_or_else(|| TargetError::UnknownInterface(name.clone()))?;
            Ok(SocketAddr::V6(SocketAddrV6::new(ip, g.port, 0, index)))
        }
        (ip, _) => Ok(SocketAddr::new(ip, g.port)),
    }
}

/// The members of `group` that answer a multicast `GET /.well-known/core` within `window`.
async fn ask_group(client: &CoapClient, group: SocketAddr, window: Duration) -> Vec<SocketAddr> {
    let request = ClientRequest::get("/.well-known/core").accept(LINK_FORMAT);
    match client.multicast_request(group, request, window).await {
        Ok(answers) => {
            info!("discovery: group {group}: {} answered", answers.len());
            answers
                .into_iter()
                .filter(|(_, r)| r.code == Code::CONTENT)
                .map(|(from, _)| from)
                .collect()
        }
        Err(e) => {
            warn!("discovery: cannot ask group {group}: {e}");
            Vec::new()
        }
    }
}

/// Stop discovering (sent by the gateway before it shuts the CoAP endpoint down).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopDiscovery;

/// mDNS services that resolved to this host's own address: one log line per period at most.
static OWN_HOST_ANNOUNCED: LogThrottle = LogThrottle::new();

/// How soon a replica that is not on duty looks again before its first round.
const NOT_ON_DUTY_RETRY: Duration = Duration::from_secs(1);

/// The most mDNS-found targets kept at once, so a noisy network cannot grow the state without
/// bound.
pub(crate) const MAX_MDNS_TARGETS: usize = 4_096;

/// A `_coap._udp` service found by mDNS (sent by `dnssd::browse`): ask `addr` now and in every
/// round while the service is announced.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(crate) struct AddMdnsTarget {
    /// The service instance's full name, e.g. `lamp._coap._udp.local.`.
    pub instance: String,
    pub addr: SocketAddr,
}

/// The service was withdrawn (goodbye) or expired: stop asking its address.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub(crate) struct RemoveMdnsTarget {
    pub instance: String,
}

/// What one round found, logged at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoundDone {
    pub asked: usize,
    pub registered: usize,
    /// Left alone: the device registered itself (by address or by name).
    pub self_registered: usize,
    /// No answer, an error answer, or an answer that is not link-format.
    pub failed: usize,
    /// Answers from another Resource Directory (`rt=core.rd*`), never registered.
    pub resource_directories: usize,
}

/// One device's result.
enum Found {
    Registered,
    SelfRegistered,
    Failed,
    ResourceDirectory,
}

pub(crate) struct Discovery {
    settings: DiscoverySettings,
    registry: Addr<Registry>,
    reader: RegistryReader,
    client: CoapClient,
    /// Addresses found by mDNS, by service instance.
    mdns_targets: BTreeMap<String, SocketAddr>,
    /// Immediate asks of newly found mDNS targets outstanding (at most `max_in_flight`; the
    /// others wait for the next round).
    mdns_asking: usize,
    round: u64,
    running: bool,
    stopped: bool,
    /// Replicas on etcd: each address is asked by the replica that owns
    /// `discovery/<address>` only, so a device is not asked once per replica.
    ownership: Option<Ownership>,
    /// A round is to be tried again once this replica is on duty.
    duty_retry: bool,
}

impl Discovery {
    pub(crate) fn new(
        settings: DiscoverySettings,
        registry: Addr<Registry>,
        reader: RegistryReader,
        client: CoapClient,
    ) -> Self {
        Discovery {
            settings,
            registry,
            reader,
            client,
            mdns_targets: BTreeMap::new(),
            mdns_asking: 0,
            round: 0,
            running: false,
            stopped: false,
            ownership: None,
            duty_retry: false,
        }
    }

    /// Whether this replica asks `addr` (always, without replicas).
    fn mine(&self, addr: &SocketAddr) -> bool {
        owns_target(self.ownership.as_ref(), addr)
    }

    /// Addresses that hold a registration their device made itself: discovery leaves them
    /// alone even under a different name.
    fn self_registered_addrs(&self) -> HashSet<SocketAddr> {
        let now = now_ms();
        self.reader.with_index(|idx| {
            idx.live(now)
                .filter(|reg| !is_discovered(reg))
                .flat_map(|reg| [Some(reg.source), ping_target(&reg.base).ok()])
                .flatten()
                .collect()
        })
    }

    /// A device that registered itself after discovery had registered it would otherwise be
    /// listed twice until the discovered registration expired: remove the discovered one.
    fn retire_superseded(&self, self_registered: &HashSet<SocketAddr>) {
        let now = now_ms();
        let superseded: Vec<_> = self.reader.with_index(|idx| {
            idx.live(now)
                .filter(|reg| is_discovered(reg) && self_registered.contains(&reg.source))
                .map(|reg| (reg.id, reg.ep.clone()))
                .collect()
        });
        for (id, ep) in superseded {
            info!("discovery: {ep} ({id}) registered itself; removing its discovered registration");
            self.registry.do_send(Remove::by_gateway(id));
        }
    }

    /// The configured targets, then the mDNS-found ones not among them.
    fn round_targets(&self) -> Vec<SocketAddr> {
        let mut seen: HashSet<SocketAddr> = self.settings.targets.iter().copied().collect();
        let mut targets = self.settings.targets.clone();
        targets.extend(self.mdns_targets.values().filter(|a| seen.insert(**a)));
        targets.retain(|a| self.mine(a));
        targets
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if self.ownership.as_ref().is_some_and(|o| !o.on_duty()) {
            // A replica that has not joined yet (or lost its lease) owns nothing: look again
            // soon rather than a whole interval later (one such retry at a time).
            if !self.duty_retry {
                self.duty_retry = true;
                ctx.run_later(NOT_ON_DUTY_RETRY, |act, ctx| {
                    act.duty_retry = false;
                    act.start_round(ctx);
                });
            }
            return;
        }
        if self.running {
            warn!(
                "discovery: round {} still running after {:?}; skipping this one",
                self.round, self.settings.interval
            );
            return;
        }
        self.round += 1;
        self.running = true;
        let number = self.round;
        let skip = self.self_registered_addrs();
        self.retire_superseded(&skip);
        let targets = self.round_targets();
        let client = self.client.clone();
        let registry = self.registry.clone();
        let settings = self.settings.clone();
        let ownership = self.ownership.clone();
        let started = Instant::now();
        let round = async move {
            let mut targets = targets;
            let mut listed: HashSet<SocketAddr> = targets.iter().copied().collect();
            let asks = settings
                .groups
                .iter()
                .filter(|g| owns_target(ownership.as_ref(), g))
                .map(|g| ask_group(&client, *g, settings.timeout));
            for member in futures::future::join_all(asks).await.into_iter().flatten() {
                if owns_target(ownership.as_ref(), &member) && listed.insert(member) {
                    targets.push(member);
                }
            }
            let mut done = RoundDone {
                asked: targets.len(),
                ..Default::default()
            };
            let mut results = stream::iter(targets)
                .map(|addr| {
                    let client = client.clone();
                    let registry = registry.clone();
                    let settings = settings.clone();
                    let skip = skip.contains(&addr);
                    async move {
                        if skip {
                            return Found::SelfRegistered;
                        }
                        discover_one(&client, &registry, &settings, addr).await
                    }
                })
                .buffer_unordered(settings.max_in_flight);
            while let Some(found) = results.next().await {
                match found {
                    Found::Registered => done.registered += 1,
                    Found::SelfRegistered => done.self_registered += 1,
                    Found::Failed => done.failed += 1,
                    Found::ResourceDirectory => done.resource_directories += 1,
                }
            }
            done
        };
        ctx.spawn(round.into_actor(self).map(move |done, act, _ctx| {
            act.running = false;
            info!(
                "discovery: round {number} in {:?}: {} asked, {} registered, {} self-registered, \
                 {} without a usable answer, {} resource directories",
                started.elapsed(),
                done.asked,
                done.registered,
                done.self_registered,
                done.failed,
                done.resource_directories
            );
        }));
    }
}

/// Ask one address and register what it answers.
async fn discover_one(
    client: &CoapClient,
    registry: &Addr<Registry>,
    settings: &DiscoverySettings,
    addr: SocketAddr,
) -> Found {
    let identity = settings.secure.get(&addr).cloned();
    let mut request = ClientRequest::get("/.well-known/core")
        .accept(LINK_FORMAT)
        .timeout(settings.timeout);
    if let Some(identity) = &identity {
        request = request.over_dtls(Some(Arc::clone(identity)));
    }
    let response = match client.request(addr, request).await {
        Ok(r) => r,
        Err(e) => {
            debug!("discovery: {addr}: no answer: {e}");
            return Found::Failed;
        }
    };
    if response.code != Code::CONTENT {
        debug!("discovery: {addr}: answered {}", response.code);
        return Found::Failed;
    }
    let links = match parse_link_payload(response.content_format, &response.payload) {
        Ok(links) => links,
        Err(e) => {
            debug!("discovery: {addr}: unusable /.well-known/core: {e}");
            return Found::Failed;
        }
    };
    if is_resource_directory(&links) {
        debug!("discovery: {addr} is a resource directory; not registering it");
        return Found::ResourceDirectory;
    }
    let links = limited_links(addr, links);
    // A DTLS device is registered under the identity it authenticated as, bound to it.
    let ep = match identity.as_deref().map(crate::registry::EndpointName::new) {
        Some(Ok(name)) => name,
        _ => endpoint_name(&links, addr),
    };
    let base = match identity {
        Some(_) => base_of(addr).replacen("coap://", "coaps://", 1),
        None => base_of(addr),
    };
    let register = Register {
        identity,
        ep: ep.clone(),
        d: None,
        base: Some(base),
        lifetime_s: settings.lifetime_s,
        attrs: vec![Param::new(DISCOVERED_MARKER.0, Some(DISCOVERED_MARKER.1))],
        links,
        source: addr,
    };
    match registry.send(RegisterDiscovered(register)).await {
        Ok(Ok(DiscoveredOutcome::Registered(r))) => {
            if r.created {
                info!(
                    "discovery: registered {ep} at {addr} ({})",
                    r.registration.id
                );
            }
            Found::Registered
        }
        Ok(Ok(DiscoveredOutcome::NameTaken(r))) => {
            warn!(
                "discovery: {addr} offers ep {ep}, already discovered at {} ({}); not registered",
                r.source, r.id
            );
            Found::Failed
        }
        Ok(Ok(DiscoveredOutcome::SelfRegistered(r))) => {
            debug!(
                "discovery: {ep} at {addr} registered itself ({}); left alone",
                r.id
            );
            Found::SelfRegistered
        }
        Ok(Err(e)) => {
            warn!("discovery: cannot register {ep} at {addr}: {e}");
            Found::Failed
        }
        Err(_) => {
            warn!("discovery: the registry is not running");
            Found::Failed
        }
    }
}

/// An answer advertising an RD (RFC 9176 §4.3 `rt=core.rd*`) comes from a directory, not a
/// device: the RD itself when a range covers its port, or a peer RD.
fn is_resource_directory(links: &[Link]) -> bool {
    links
        .iter()
        .flat_map(|l| l.values("rt"))
        .flat_map(str::split_whitespace)
        .any(|rt| rt.starts_with("core.rd"))
}

/// The links an RD may store (RFC 9176 Appendix C); the others are dropped, not the device.
fn limited_links(addr: SocketAddr, links: Vec<Link>) -> Vec<Link> {
    links
        .into_iter()
        .filter(|link| match check_limited_link(link) {
            Ok(()) => true,
            Err(e) => {
                debug!("discovery: {addr}: dropping link <{}>: {e}", link.target);
                false
            }
        })
        .collect()
}

/// `coap://127.0.0.1:5683`, `coap://[::1]:5683` (scope ids are not part of a CoAP URI here).
fn base_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("coap://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("coap://[{}]:{}", a.ip(), a.port()),
    }
}

impl Actor for Discovery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(
            "discovery: {} targets and {} groups every {:?}, lifetime {} s",
            self.settings.targets.len(),
            self.settings.groups.len(),
            self.settings.interval,
            self.settings.lifetime_s
        );
        self.start_round(ctx);
        ctx.run_interval(self.settings.interval, |act, ctx| act.start_round(ctx));
    }
}

impl Handler<StopDiscovery> for Discovery {
    type Result = ();

    fn handle(&mut self, _msg: StopDiscovery, ctx: &mut Self::Context) {
        self.stopped = true;
        ctx.stop();
    }
}

impl Handler<AddMdnsTarget> for Discovery {
    type Result = ();

    fn handle(&mut self, msg: AddMdnsTarget, ctx: &mut Self::Context) {
        if self.stopped {
            return;
        }
        // An mDNS answer is anyone's claim on the LAN. One that names this
        // host (loopback, unspecified, one of its addresses) would make the gateway register a
        // service of its own host and stream it to the platform; only the operator may ask
        // the host itself, by listing it in `discovery.targets`.
        if crate::host_addrs::is_own(msg.addr.ip()) {
            self.mdns_targets.remove(&msg.instance);
            if let Some(n) = OWN_HOST_ANNOUNCED.note() {
                warn!(
                    "discovery: {n} mDNS services naming this host ignored (latest: {} at {}); \
                     list a service of this host in discovery.targets to discover it",
                    msg.instance, msg.addr
                );
            }
            return;
        }
        let known = self.mdns_targets.get(&msg.instance) == Some(&msg.addr);
        if !known
            && !self.mdns_targets.contains_key(&msg.instance)
            && self.mdns_targets.len() >= MAX_MDNS_TARGETS
        {
            warn!(
                "discovery: {MAX_MDNS_TARGETS} mDNS targets already; ignoring {} at {}",
                msg.instance, msg.addr
            );
            return;
        }
        self.mdns_targets.insert(msg.instance.clone(), msg.addr);
        if known {
            return;
        }
        info!("discovery: mDNS found {} at {}", msg.instance, msg.addr);
        if !self.mine(&msg.addr) {
            debug!("discovery: {} is another replica's to ask", msg.addr);
            return;
        }
        if self.self_registered_addrs().contains(&msg.addr) {
            debug!("discovery: {} registered itself; left alone", msg.addr);
            return;
        }
        if self.mdns_asking >= self.settings.max_in_flight {
            debug!("discovery: {} waits for the next round", msg.addr);
            return;
        }
        // Asked now rather than at the next round, which may be a whole interval away.
        let (client, registry, settings) = (
            self.client.clone(),
            self.registry.clone(),
            self.settings.clone(),
        );
        self.mdns_asking += 1;
        ctx.spawn(
            async move { discover_one(&client, &registry, &settings, msg.addr).await }
                .into_actor(self)
                .map(|_, act, _| act.mdns_asking -= 1),
        );
    }
}

impl Handler<RemoveMdnsTarget> for Discovery {
    type Result = ();

    fn handle(&mut self, msg: RemoveMdnsTarget, _ctx: &mut Self::Context) {
        if let Some(addr) = self.mdns_targets.remove(&msg.instance) {
            info!(
                "discovery: mDNS service {} at {addr} withdrawn; its registration expires",
                msg.instance
            );
        }
    }
}

/// Start the Discovery actor on the current arbiter.
/// Whether the replica with `ownership` asks `addr` (always, without replicas). A group
/// address is owned like a unicast one: only its owner sends the multicast request.
fn owns_target(ownership: Option<&Ownership>, addr: &SocketAddr) -> bool {
    ownership.is_none_or(|o| o.owns_key(&format!("discovery/{addr}")))
}

/// Start Discovery; with `ownership` (replicas on etcd) it asks only the addresses this
/// replica owns.
pub(crate) fn start(
    settings: DiscoverySettings,
    registry: Addr<Registry>,
    reader: RegistryReader,
    client: CoapClient,
    ownership: Option<Ownership>,
) -> Addr<Discovery> {
    let mut discovery = Discovery::new(settings, registry, reader, client);
    discovery.ownership = ownership;
    discovery.start()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_coap_uris() {
        assert_eq!(
            base_of("127.0.0.1:40003".parse().unwrap()),
            "coap://127.0.0.1:40003"
        );
        assert_eq!(base_of("[::1]:5683".parse().unwrap()), "coap://[::1]:5683");
    }

    #[test]
    fn directories_are_recognised_by_rt() {
        let rd = vec![Link::new("/rd").with("rt", Some("core.rd"))];
        let rd_lookup = vec![Link::new("/x").with("rt", Some("foo core.rd-lookup-ep"))];
        let device = vec![Link::new("/sensors/temp").with("rt", Some("temperature"))];
        assert!(is_resource_directory(&rd));
        assert!(is_resource_directory(&rd_lookup));
        assert!(!is_resource_directory(&device));
    }

    #[test]
    fn links_outside_limited_link_format_are_dropped() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let links = vec![Link::new("/ok"), Link::new("relative"), Link::new("/fine")];
        let kept = limited_links(addr, links);
        assert_eq!(kept, vec![Link::new("/ok"), Link::new("/fine")]);
    }
}
