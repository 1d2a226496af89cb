//! Wires the actors together for the `coap-gateway` binary: open the registry, bind the RD's
//! sockets, log one line per listener, dial the platform when one is configured, serve the admin
//! HTTP API when `http.listen` is set, run until SIGINT/SIGTERM, then shut down in order
//! (`stop`: stop the admin server, withdraw the DNS-SD advertisement, refuse new changes, end
//! observations, close the platform link, close the sockets). Every acknowledged write is
//! already durable, so stopping loses nothing.

use crate::config::PlainCoap;
use crate::rd::access::{RdAccess, RegistrationAuthority};
use crate::security::{self, IdentityStore};
use std::sync::Arc;

use log::{error, info};
use thiserror::Error;

use actix::prelude::*;

use crate::admin::{self, AdminError, AdminState, RunningAdmin};
use crate::cluster::{self, data_relay::DataRelay, LeaderLink, StopLeaderLink};
use crate::coap::CoapError;
use crate::config::{Config, ConfigError};
use crate::discovery::{self, StopDiscovery};
use crate::dnssd::{self, Mdns, RdAdvertisement};
use crate::executer::{self};
use crate::observer::{self, StopObserver};
use crate::pinger::{self, StopPinger};
use crate::platform::{
    Numbering, OutboxStore, PlatformLink, SetCommandRecipient, SnapshotSource, StopLink,
};
use crate::rd::server as rd_server;
/// The RD's running handle (`Running::rd`) and the error of joining its multicast groups.
pub use crate::rd::server::{MulticastError, RunningRd};
use crate::registry::{
    self, AwaitStoreRestart, Registration, Registry, RegistryReader, StoreError, SubscribeFeed,
};
use crate::time::now_ms;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The registry cannot be opened: the sled database (locked by another process, not a
    /// directory), or the etcd prefix (another cluster's).
    #[error("{}", describe_store_error(.0))]
    Store(#[from] StoreError),
    /// A listen address from the config that cannot be bound (taken, not local): as much a
    /// configuration error as an unparsable one, so it names the key.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the CoAP endpoint: {0}")]
    Coap(CoapError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Multicast(#[from] MulticastError),
    #[error(transparent)]
    Admin(AdminError),
    /// The registry's store failed a write and can only recover by a restart.
    #[error("exiting for a restart: {0}")]
    StoreNeedsRestart(String),
}

/// How long shutdown waits for the mDNS daemon to send its goodbyes and stop.
const MDNS_GOODBYE_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// How long shutdown waits for requests inside the RD and for lookup observers' final 5.03.
const RD_DRAIN_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// How long shutdown waits for the platform link to close cleanly.
const PLATFORM_CLOSE_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Run the gateway on a fresh actix system until a shutdown signal arrives.
pub fn run_blocking(config: Config) -> Result<(), GatewayError> {
    actix::System::new().block_on(run(config))
}

impl GatewayError {
    /// Whether the error is an unusable setting (exit code 2): a bad value, an address that
    /// cannot be bound, a data directory that cannot be opened.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            GatewayError::Config(_)
                | GatewayError::Store(_)
                | GatewayError::Listen { .. }
                | GatewayError::Multicast(_)
        )
    }
}

impl From<CoapError> for GatewayError {
    fn from(e: CoapError) -> Self {
        match e {
            CoapError::Bind { addr, source } => GatewayError::Listen {
                key: "rd.listen",
                addr,
                source,
            },
            other => GatewayError::Coap(other),
        }
    }
}

impl From<AdminError> for GatewayError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Bind { addr, source } => GatewayError::Listen {
                key: "http.listen",
                addr,
                source,
            },
            other => GatewayError::Admin(other),
        }
    }
}

/// A started gateway: what `run` needs to shut it down, and what tests may inspect.
pub struct Running {
    pub rd: RunningRd,
    /// The device identities (`dtls.identities_file`), re-read on SIGHUP.
    pub(crate) identities: Option<IdentityStore>,
    /// `None` when `pinger.enabled` is false.
    pub pinger: Option<actix::Addr<pinger::Pinger>>,
    /// `None` when `discovery.enabled` is false.
    pub(crate) discovery: Option<actix::Addr<discovery::Discovery>>,
    /// `None` when `observer.enabled` is false or no platform is configured.
    pub(crate) observer: Option<Addr<observer::Observer>>,
    /// The platform link, on its own arbiter, when `platform.url` is set.
    pub platform: Option<(Addr<PlatformLink>, Arbiter)>,
    /// Executes the platform's commands; present exactly when `platform` is. Never read: held
    /// so the Executer lives as long as the gateway.
    #[allow(dead_code)]
    pub(crate) executer: Option<Addr<executer::Executer>>,
    /// The admin HTTP server; `None` when `http.listen` is empty.
    pub(crate) admin: Option<RunningAdmin>,
    /// The mDNS daemon; `None` unless `rd.dnssd` or `discovery.mdns` (`Config::needs_mdns`).
    pub(crate) mdns: Option<Mdns>,
    /// The Registry, for [`AwaitStoreRestart`].
    pub(crate) registry: Addr<Registry>,
    /// Replicas: the platform link while this replica is the leader.
    pub(crate) leader_link: Option<Addr<LeaderLink>>,
}

/// The platform's snapshot after every connect: every live registration, in id order.
impl SnapshotSource for RegistryReader {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        self.with_index(|idx| idx.live(now_ms()).cloned().collect())
    }

    fn snapshot_at(&self, revision: i64) -> Option<Vec<Arc<Registration>>> {
        self.with_index(|idx| {
            (idx.revision() >= revision).then(|| idx.live(now_ms()).cloned().collect())
        })
    }
}

/// Start every component on the current actix system.
pub async fn start(config: &Config) -> Result<Running, GatewayError> {
    // What validation parsed (listen addresses, discovery targets, the observer's settings):
    // not parsed again.
    let parsed = config.parsed()?;
    let listen = &parsed.rd_listen;
    // Bound before any actor starts: a taken admin port stops the start with nothing to undo.
    let admin_listener = parsed.http_listen.map(admin::bind).transpose()?;
    // Before anything else runs: a daemon that cannot start is refused as a configuration
    // error while there is nothing to stop yet.
    let mdns = if config.needs_mdns() {
        let mdns = Mdns::start(&config.rd.dnssd_interfaces).map_err(|e| ConfigError::Invalid {
            key: "rd.dnssd",
            message: e.to_string(),
        })?;
        Some(mdns)
    } else {
        None
    };
    let opened = open_registry(config).await?;
    let (registry, reader) = (opened.registry, opened.reader);
    // The RD's sockets before the platform link: a taken CoAP port must stop the start before
    // the gateway says hello to the platform.
    let dtls = &config.dtls()?;
    let plain_coap = config.plain_coap()?;
    let identities = dtls.identity_store();
    if let Some(store) = &identities {
        info!(
            "dtls: {} device identities from {}",
            store.current().len(),
            store.path().display()
        );
    }
    let mut settings = config.rd_settings();
    settings.access = RdAccess {
        plain_writes: plain_coap == PlainCoap::Open,
        authority: identities
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn RegistrationAuthority>),
    };
    let dtls_server = dtls
        .enabled()
        .then(|| dtls.server_config(identities.as_ref(), config.limits.exempt_loopback));
    // `security.plain_coap: off`: only the coaps sockets are opened.
    let plain_listen: &[std::net::SocketAddr] = if plain_coap == PlainCoap::Off {
        &[]
    } else {
        listen
    };
    let params = config.rd_endpoint_params();
    let rd = rd_server::start(
        plain_listen,
        dtls_server.as_ref().map(|c| (dtls.listen.as_slice(), c)),
        params,
        Arc::new(settings),
        registry.clone(),
        reader.clone(),
    )
    .await?;
    // Replicas: only the elected leader holds the platform link (`cluster::leader_link`).
    let leader_link = match (&opened.store, &opened.ownership) {
        (Some(store), Some(ownership)) if !config.platform.url.is_empty() => {
            let leading = registry::etcd::leader::campaign(store.clone(), ownership.clone());
            let link_settings = config.platform.link_settings(config.gateway.id.clone());
            let executer_settings = config.executer.settings();
            let (store, reader, client) = (store.clone(), reader.clone(), rd.client());
            let ownership = ownership.clone();
            let replica = ownership.me().to_owned();
            let start_link: cluster::leader_link::StartLink = Box::new(move |term| {
                let arbiter = Arbiter::new();
                let mut settings = link_settings.clone();
                settings.numbering = Numbering::Revision {
                    replica: replica.clone(),
                };
                let link = PlatformLink::start_on(
                    &arbiter.handle(),
                    settings,
                    Arc::new(reader.clone()),
                    None,
                );
                // Events come from etcd's history, numbered by revision, not from this
                // replica's registry feed: a leader change neither loses nor renumbers one.
                arbiter.spawn(cluster::feed::run(store.clone(), term, link.clone()));
                // Command results take the data's path through etcd, so the next leader
                // re-sends one the platform had not acknowledged when this one died.
                let results = {
                    let (store, ownership) = (store.clone(), ownership.clone());
                    let link = link.clone().recipient();
                    DataRelay::start_in_arbiter(&arbiter.handle(), move |_| {
                        DataRelay::for_results(store, ownership, link)
                    })
                };
                let executer = executer::start(
                    executer_settings.clone(),
                    reader.clone(),
                    client.clone(),
                    Some(results.recipient()),
                );
                link.do_send(SetCommandRecipient(Some(executer.clone().recipient())));
                cluster::leader_link::RunningLink {
                    link,
                    arbiter,
                    executer,
                }
            });
            Some(LeaderLink::new(leading, start_link).start())
        }
        _ => None,
    };
    let platform = if config.platform.url.is_empty() || leader_link.is_some() {
        if leader_link.is_none() {
            info!("platform link disabled (platform.url is empty)");
        }
        None
    } else {
        // A thread of its own: rendering a large snapshot after each connect must not stall
        // the RD's socket.
        let arbiter = Arbiter::new();
        let mut settings = config.platform.link_settings(config.gateway.id.clone());
        settings.outbox = opened
            .database
            .as_ref()
            .map(OutboxStore::open)
            .transpose()
            .map_err(StoreError::Io)?;
        let link =
            PlatformLink::start_on(&arbiter.handle(), settings, Arc::new(reader.clone()), None);
        registry.do_send(SubscribeFeed(link.clone().recipient()));
        Some((link, arbiter))
    };
    if config.rd.multicast {
        rd.join_multicast(&config.rd.multicast_interfaces)?;
    }
    // Discovery asks from the RD's sockets too: devices see the RD's address.
    let discovery = if config.discovery.enabled {
        let settings = config
            .discovery
            .settings(&parsed.discovery_targets)
            .map_err(|e| ConfigError::Invalid {
                key: "discovery.targets",
                message: e.to_string(),
            })?;
        Some(discovery::start(
            settings,
            registry.clone(),
            reader.clone(),
            rd.client(),
            opened.ownership.clone(),
        ))
    } else {
        None
    };
    // The latest values the Observer got, for the console's device page.
    let readings = observer::Readings::default();
    // Observations and polls leave from the RD's sockets too. Without a platform the data
    // would have nowhere to go, so the Observer only runs when one is configured.
    let observer = match (&platform, config.observer.enabled) {
        (Some((link, _)), true) => Some(link.clone().recipient()),
        // Replicas: each observes the devices it owns and hands the data to the leader
        // through etcd (`cluster::data_relay`).
        (None, true) if leader_link.is_some() => match (&opened.store, &opened.ownership) {
            (Some(store), Some(ownership)) => Some(
                DataRelay::new(store.clone(), ownership.clone())
                    .start()
                    .recipient(),
            ),
            _ => None,
        },
        (None, true) => {
            info!("observer not started: no platform to send data to (platform.url is empty)");
            None
        }
        (_, false) => None,
    }
    .map(|data| {
        let observer = observer::start(
            parsed.observer.clone(),
            reader.clone(),
            rd.client(),
            data,
            opened.ownership.clone(),
            readings.clone(),
        );
        registry.do_send(SubscribeFeed(observer.clone().recipient()));
        observer
    });
    // Commands, like pings, leave from the RD's sockets, so devices see the address they
    // registered with.
    let executer = platform.as_ref().map(|(link, _)| {
        let executer = executer::start(
            config.executer.settings(),
            reader.clone(),
            rd.client(),
            Some(link.clone().recipient()),
        );
        link.do_send(SetCommandRecipient(Some(executer.clone().recipient())));
        executer
    });
    // Pings leave from the RD's sockets, so devices see the address they registered with.
    let pinger = config.pinger.enabled.then(|| {
        pinger::start(
            config.pinger.settings(),
            registry.clone(),
            reader.clone(),
            rd.client(),
            opened.ownership.clone(),
        )
    });
    let member = opened.ownership.as_ref().map(|o| o.me().to_owned());
    let mdns = mdns.map(|mdns| use_mdns(mdns, config, &rd, member, discovery.as_ref()));
    for addr in rd.local_addrs() {
        info!("rd listening on udp://{addr}");
    }
    for addr in rd.secure_addrs() {
        info!("rd listening on coaps://{addr} (DTLS 1.2)");
    }
    let admin = match admin_listener {
        Some(listener) => Some(admin::start_on(
            listener,
            AdminState {
                reader: reader.clone(),
                registry: registry.clone(),
                platform: platform.as_ref().map(|(link, _)| link.clone()),
                allowed_hosts: admin::AllowedHosts::new(&config.http.allowed_hosts),
                auth: admin::AdminAuth::new(config.http.token.clone()),
                dtls: rd.dtls_stats(),
                events: Some({
                    let hub = admin::EventHub::default().start();
                    registry.do_send(SubscribeFeed(hub.clone().recipient()));
                    hub
                }),
                // The console's requests: the platform's Executer, or one of its own.
                executer: Some(executer.clone().unwrap_or_else(|| {
                    executer::start(
                        config.executer.settings(),
                        reader.clone(),
                        rd.client(),
                        None,
                    )
                })),
                readings: observer.as_ref().map(|_| readings.clone()),
                activity: admin::Activity::default(),
                listeners: admin::Listeners {
                    gateway_id: config.gateway.id.clone(),
                    coap: rd
                        .local_addrs()
                        .iter()
                        .map(|a| format!("udp://{a}"))
                        .chain(rd.secure_addrs().iter().map(|a| format!("coaps://{a}")))
                        .collect(),
                    admin: None,
                },
            },
            config.http.tls.clone(),
        )?),
        None => {
            info!("admin http disabled (http.listen is empty)");
            None
        }
    };
    Ok(Running {
        leader_link,
        identities,
        admin,
        mdns,
        rd,
        platform,
        executer,
        pinger,
        discovery,
        observer,
        registry,
    })
}

/// A store error at start, named by the key that leads to it.
fn describe_store_error(e: &StoreError) -> String {
    match e {
        StoreError::Etcd(_) | StoreError::WrongCluster(_) => format!("registry.etcd: {e}"),
        other => format!("gateway.data_dir: {other}"),
    }
}

/// The registry as `registry.backend` says.
struct OpenedRegistry {
    registry: Addr<Registry>,
    reader: RegistryReader,
    /// The sled database, where the platform link keeps its outbox (sled backend only).
    database: Option<sled::Db>,
    /// Which registrations this replica owns (etcd backend only).
    ownership: Option<crate::registry::etcd::Ownership>,
    /// The etcd connection, for the leader election (etcd backend only).
    store: Option<crate::registry::etcd::EtcdStore>,
}

/// How often a replica waiting for etcd at start says so.
const ETCD_WAIT_LOG: std::time::Duration = std::time::Duration::from_secs(10);

/// Open sled, or join the replicas on etcd: a replica waits for etcd (one log line per
/// [`ETCD_WAIT_LOG`]) and binds the RD only once its index is loaded, so it never answers from
/// an empty registry. A prefix claimed by another cluster id stops the start.
async fn open_registry(config: &Config) -> Result<OpenedRegistry, GatewayError> {
    let Some(settings) = config.etcd_settings() else {
        let (registry, reader, database) =
            registry::start_sharing_database(config.registry_config(), config.write_policy())?;
        info!(
            "registry opened at {} with {} registrations",
            config.gateway.data_dir.display(),
            reader.len()
        );
        return Ok(OpenedRegistry {
            registry,
            reader,
            database: Some(database),
            ownership: None,
            store: None,
        });
    };
    let mut last_log: Option<std::time::Instant> = None;
    loop {
        match registry::start_on_etcd_with_policy(
            config.registry_config(),
            &settings,
            config.write_policy(),
        )
        .await
        {
            Ok((registry, reader, ownership, store)) => {
                info!(
                    "registry on etcd (member {}) with {} registrations",
                    settings.member_name,
                    reader.len()
                );
                return Ok(OpenedRegistry {
                    registry,
                    reader,
                    database: None,
                    ownership: Some(ownership),
                    store: Some(store),
                });
            }
            Err(e @ StoreError::Etcd(_)) => {
                if last_log.is_none_or(|at| at.elapsed() >= ETCD_WAIT_LOG) {
                    error!("registry: waiting for etcd: {e}");
                    last_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Advertise the RD's bound listeners and hand what `_coap._udp` browsing finds to the
/// Discovery actor. A failure here is logged and the gateway runs on without that part: the
/// RD already serves, and a half-started gateway cannot be unwound cleanly.
fn use_mdns(
    mut mdns: Mdns,
    config: &Config,
    rd: &RunningRd,
    member: Option<String>,
    discovery: Option<&Addr<discovery::Discovery>>,
) -> Mdns {
    if config.rd.dnssd {
        let advert = RdAdvertisement {
            gateway_id: config.gateway.id.clone(),
            listeners: rd.local_addrs(),
            simple_registration: config.rd.simple_registration,
            member,
        };
        if let Err(e) = mdns.advertise_rd(&advert) {
            error!("dnssd: the RD is not advertised: {e}");
        }
    }
    if let (true, Some(discovery)) = (config.discovery.mdns, discovery) {
        let found = discovery.clone().recipient();
        if let Err(e) = dnssd::browse_coap(&mdns, found, discovery.clone().recipient()) {
            error!("dnssd: not browsing for _coap._udp devices: {e}");
        }
    }
    mdns
}

/// Start, wait for SIGINT or SIGTERM, stop.
pub(crate) async fn run(config: Config) -> Result<(), GatewayError> {
    let running = match start(&config).await {
        Ok(running) => running,
        Err(e) => {
            settle_unstarted_actors().await;
            return Err(e);
        }
    };
    // The Registry asks for a restart when its store can only recover that way (a full disk
    // that has room again: `registry::recovery`); the gateway then stops as on SIGTERM and
    // exits non-zero, for the service manager to restart it.
    let restart = running.registry.send(AwaitStoreRestart);
    let restart = async {
        match restart.await {
            Ok(reason) => reason,
            Err(_) => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        signal = wait_for_shutdown_signal() => signal.map_err(GatewayError::from),
        never = reload_on_hangup(&running) => never,
        reason = restart => Err(GatewayError::StoreNeedsRestart(reason)),
    };
    info!("shutting down");
    stop(running).await;
    info!("gateway stopped");
    outcome
}

/// The graceful stop, in order: the admin server (it only reads, and must not report on
/// components being stopped); the DNS-SD advertisement (devices must stop finding an RD that
/// is going away); the RD stops accepting changes (5.03 + Max-Age; requests
/// already inside are answered, so every 2.01/2.04/2.02 sent is durable) and ends its lookup
/// observations with a final 5.03; pings and discovery stop; the Observer deregisters its
/// observations (RFC 7641 §3.6) while the endpoint can still send; the platform link sends its
/// Close frame and waits for the platform's; then the sockets close. Each step is bounded.
pub(crate) async fn stop(mut running: Running) {
    if let Some(admin) = running.admin.take() {
        admin.shutdown().await;
    }
    if let Some(mdns) = running.mdns.take() {
        mdns.shutdown(MDNS_GOODBYE_BUDGET).await;
    }
    running.rd.drain(RD_DRAIN_BUDGET).await;
    // Stop pinging: pings cut short by the endpoint's shutdown prove nothing about a device
    // and must not race the shutdown.
    if let Some(pinger) = &running.pinger {
        let _ = pinger.send(StopPinger).await;
    }
    if let Some(discovery) = &running.discovery {
        let _ = discovery.send(StopDiscovery).await;
    }
    // Resolves once the deregistration GETs are answered (bounded inside the Observer).
    if let Some(observer) = &running.observer {
        let _ = observer.send(StopObserver).await;
    }
    if let Some(leader_link) = &running.leader_link {
        let _ = leader_link.send(StopLeaderLink).await;
    }
    if let Some((link, arbiter)) = running.platform {
        // StopLink sends our Close; the actor stops when the platform answers it (or after a
        // grace period). Bounded: a platform that does not answer must not hold up the exit.
        let closed = async {
            let _ = link.send(StopLink).await;
            while link.connected() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(PLATFORM_CLOSE_BUDGET, closed)
            .await
            .is_err()
        {
            log::warn!("platform link did not close in time");
        }
        arbiter.stop();
    }
    running.rd.shutdown().await;
}

/// Let actors that were started but never polled run their `started` on this runtime. A start
/// that fails half-way drops them unpolled; the actix system would then start them while it is
/// being dropped, outside the Tokio runtime, and their timers (`run_later`, `run_interval`)
/// panic with "there is no reactor running". One turn of the local task set is enough; a few
/// are given so that actors started from another actor's `started` get theirs too.
async fn settle_unstarted_actors() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

/// SIGHUP re-reads the identities file (`security::reload`); without one it is only logged.
/// Runs until the gateway stops.
async fn reload_on_hangup(running: &Running) -> Result<(), GatewayError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup())?;
    while hangup.recv().await.is_some() {
        match &running.identities {
            Some(store) => security::reload(store, running.rd.endpoint()),
            None => info!("SIGHUP received: nothing to reload (no dtls.identities_file)"),
        }
    }
    std::future::pending().await
}

async fn wait_for_shutdown_signal() -> Result<(), std::io::Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
