//! `device-sim`'s command line (clap), kept in the library so the binary stays a thin `main`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;

/// Simulated CoAP devices for trying and load-testing the gateway: N devices on 127.0.0.1, each
/// on its own UDP port, each registering with the Resource Directory (RFC 9176) and serving
/// /sensors/temp (observable), /actuators/led (GET/PUT) and /.well-known/core.
///
/// Control on stdin, one command per line: `silent <i>`, `wake <i>` (device i drops all traffic
/// / answers again), `silent all`, `wake all` (every device), `silent fraction`, `wake fraction`
/// (the --silent-fraction devices). Each is answered with one line on stdout.
/// Logging via RUST_LOG (debug prints each device's port).
#[derive(Debug, Clone, Parser)]
#[command(name = "device-sim", version)]
pub struct SimOptions {
    /// The Resource Directory to register with.
    #[arg(long, default_value = "127.0.0.1:5683")]
    pub rd: SocketAddr,

    /// The address every device listens on (another one than loopback only inside a test's
    /// private network namespace, e.g. for mDNS discovery).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    pub count: usize,

    /// Device i listens on port P+i; without it every device takes a free port.
    #[arg(long)]
    pub first_port: Option<u16>,

    /// Endpoint names are <prefix><i>.
    #[arg(long, default_value = "sim-")]
    pub prefix: String,

    /// Registration lifetime `lt` in seconds; devices refresh at three quarters of it.
    #[arg(long, default_value_t = 60)]
    pub lt: u32,

    /// Share of devices (0.0..=1.0, spread evenly over the indices) that go silent at
    /// --silent-after and come back at --return-after.
    #[arg(long, default_value_t = 0.0)]
    pub silent_fraction: f64,

    /// Seconds after "ready" at which the silent fraction stops answering.
    #[arg(long)]
    pub silent_after: Option<u64>,

    /// Seconds after "ready" at which the silent fraction answers again.
    #[arg(long)]
    pub return_after: Option<u64>,

    /// Only listen; do not register with the RD.
    #[arg(long)]
    pub no_register: bool,

    /// Registrations sent concurrently while starting.
    #[arg(long, default_value_t = 200)]
    pub register_concurrency: usize,

    /// Each device joins All-CoAP-Nodes of its address family (224.0.1.187 or ff02::fd) on
    /// every up, multicast-capable, non-loopback interface and answers multicast discovery
    /// (RFC 7252 §8). Needs --bind 0.0.0.0 or ::; a device receives group requests sent to
    /// its own port, so the one on port 5683 hears the standard ones.
    #[arg(long)]
    pub join_multicast: bool,

    /// Print `device-sim second S: notified N, observe answers M` once a second: the
    /// notifications started at second S (one per observed device) and the temperature
    /// representations served with Observe in it (set-ups and notifications).
    #[arg(long)]
    pub per_second: bool,

    /// Speak CoAP over DTLS with a pre-shared key: device i is PSK identity `<this><i>`
    /// (with `--psk-hex`). `--rd` is then the RD's coaps address. Use the same value as
    /// `--prefix` so each identity is its own endpoint name.
    #[arg(long)]
    pub psk_identity_prefix: Option<String>,

    /// The devices' shared pre-shared key, in hexadecimal (with `--psk-identity-prefix`).
    #[arg(long)]
    pub psk_hex: Option<String>,

    /// Upper bound of the random delay before a device answers a multicast request.
    #[arg(long, default_value_t = 1_000)]
    pub multicast_leisure_ms: u64,
}
