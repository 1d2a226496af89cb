//! Why DNS-SD could not be started. Raised by `responder`; the gateway reports it
//! as a configuration error (exit code 2), never a panic.

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum DnssdError {
    /// The mDNS daemon thread or its poller could not be created.
    #[error("cannot start the mDNS daemon: {0}")]
    Daemon(#[source] mdns_sd::Error),
    /// UDP port 5353 can be bound in neither family (another responder holds it exclusively).
    #[error("cannot bind the mDNS port UDP 5353: IPv4: {v4}; IPv6: {v6}")]
    Port {
        v4: std::io::Error,
        v6: std::io::Error,
    },
    /// The daemon refused a command (its queue full, or it has stopped).
    #[error("the mDNS daemon refused `{what}`: {source}")]
    Command {
        what: &'static str,
        #[source]
        source: mdns_sd::Error,
    },
    /// A service description the daemon cannot publish (names, addresses).
    #[error("cannot describe the DNS-SD service {instance:?}: {source}")]
    Service {
        instance: String,
        #[source]
        source: mdns_sd::Error,
    },
}
