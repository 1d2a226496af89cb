//! `coap-gateway`: parse the command line, load the config, run the gateway. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coap_gateway::config::Config;
use coap_gateway::gateway;

/// Every request allocates and frees many small blocks (CoAP messages, registrations, sled
/// nodes); glibc malloc's consolidation and chunk unlinking were a fifth of the RD thread's
/// time in the update profile (docs/benchmarks.md), mimalloc's thread-local free lists are not.
/// Built with `no_thp`: on a kernel with transparent huge pages mimalloc would back its arenas
/// with 2 MiB pages, so a few live kilobytes pin whole huge pages (48 MB RSS at start, 10 MB
/// without).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CoAP IoT edge gateway: a CoRE Resource Directory (RFC 9176) with a persistent registry,
/// device liveness, and a WebSocket link to a cloud platform.
///
/// Logging is controlled by RUST_LOG (e.g. RUST_LOG=debug); the default level is info.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Path of the YAML config file. Every key is documented in the shipped config.yaml.
    #[arg(short, long, default_value = "config.yaml")]
    config: PathBuf,

    /// Validate the config file and exit: 0 when it is usable, 2 when it is not.
    #[arg(long)]
    check: bool,
}

/// Exit code for a config that cannot be used (bad file, bad value, unusable data dir).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running.
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();

    // `--check` also probes the data directory, without opening (and locking) the database.
    let loaded = if cli.check {
        Config::load_and_check(&cli.config)
    } else {
        Config::load(&cli.config)
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coap-gateway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check {
        println!("coap-gateway: {} is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }

    match gateway::run_blocking(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coap-gateway: {e}");
            ExitCode::from(if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}
