//! Wires the actors together for the `coap-gateway` binary: open the registry, bind the RD's
//! sockets, log one line per listener, run until SIGINT/SIGTERM, then shut down in order
//! (stop taking requests, flush the registry) so nothing acknowledged is lost.

use std::sync::Arc;

use log::info;
use thiserror::Error;

use crate::coap::{CoapError, TransmissionParams};
use crate::config::{Config, ConfigError};
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
}

/// Start every component on the current actix system.
pub async fn start(config: &Config) -> Result<Running, GatewayError> {
    let listen = config.rd_listen_addrs()?;
    let (registry, reader) = registry::start(RegistryConfig::from_config(config))?;
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
        registry,
        reader,
    )
    .await?;
    for addr in rd.local_addrs() {
        info!("rd listening on udp://{addr}");
    }
    Ok(Running { rd })
}

/// Start, wait for SIGINT or SIGTERM, stop.
pub async fn run(config: Config) -> Result<(), GatewayError> {
    let running = start(&config).await?;
    wait_for_shutdown_signal().await?;
    info!("shutting down");
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
