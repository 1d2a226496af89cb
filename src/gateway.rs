//! Wires the actors together for the `coap-gateway` binary: open the registry, bind the RD's
//! sockets, log one line per listener, run until SIGINT/SIGTERM, then shut down in order
//! (stop taking requests, flush the registry) so nothing acknowledged is lost.

use std::sync::Arc;

use log::info;
use thiserror::Error;

use crate::coap::{CoapError, TransmissionParams};
use crate::config::{Config, ConfigError};
use crate::pinger::{self, PingerSettings, StopPinger};
use crate::rd::server::{self as rd_server, RunningRd};
use crate::rd::service::RdSettings;
use crate::registry::{self, RegistryConfig, StoreError};

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the CoAP endpoint: {0}")]
    Coap(#[from] CoapError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the gateway on a fresh actix system until a shutdown signal arrives.
pub fn run_blocking(config: Config) -> Result<(), GatewayError> {
    actix::System::new().block_on(run(config))
}

/// A started gateway: what `run` needs to shut it down, and what tests may inspect.
pub struct Running {
    pub rd: RunningRd,
    /// `None` when `pinger.enabled` is false.
    pub pinger: Option<actix::Addr<pinger::Pinger>>,
}

/// Start every component on the current actix system.
pub async fn start(config: &Config) -> Result<Running, GatewayError> {
    let listen = config.rd_listen_addrs()?;
    let (registry, reader) = registry::start(RegistryConfig {
        data_dir: config.gateway.data_dir.clone(),
        cache_mb: config.gateway.cache_mb,
        expiry_grace_s: config.rd.expiry_grace_s,
        max_registrations: None,
    })?;
    info!(
        "registry opened at {} with {} registrations",
        config.gateway.data_dir.display(),
        reader.len()
    );
    let settings = Arc::new(RdSettings::from_config(config));
    let rd = rd_server::start(
        &listen,
        TransmissionParams::from_config(&config.coap),
        settings,
        registry.clone(),
        reader.clone(),
    )
    .await?;
    // Pings leave from the RD's sockets, so devices see the address they registered with.
    let pinger = config.pinger.enabled.then(|| {
        pinger::start(
            PingerSettings::from_config(&config.pinger),
            registry,
            reader,
            rd.client(),
        )
    });
    for addr in rd.local_addrs() {
        info!("rd listening on udp://{addr}");
    }
    Ok(Running { rd, pinger })
}

/// Start, wait for SIGINT or SIGTERM, stop.
pub async fn run(config: Config) -> Result<(), GatewayError> {
    let running = start(&config).await?;
    wait_for_shutdown_signal().await?;
    info!("shutting down");
    // Stop pinging first: pings cut short by the endpoint's shutdown prove nothing about a
    // device and must not race the shutdown.
    if let Some(pinger) = &running.pinger {
        let _ = pinger.send(StopPinger).await;
    }
    running.rd.shutdown().await;
    Ok(())
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
