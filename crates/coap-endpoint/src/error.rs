//! Errors at the CoAP layer's edges: binding the endpoint, and client requests.

use std::io;
use std::net::SocketAddr;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoapError {
    #[error("no bind address given")]
    NoAddress,
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("DTLS: {0}")]
    Dtls(#[from] crate::dtls::DtlsError),
}

/// Why a response did not come back as expected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("response has an unsupported critical option or malformed options")]
    BadResponse,
    #[error("block-wise transfer failed: {0}")]
    Block(&'static str),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request cannot be encoded")]
    Encode,
    #[error("server did not confirm the observation")]
    NotObserved,
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no response within the time budget")]
    Timeout,
    #[error("peer rejected the message (RST)")]
    Reset,
    #[error("peer unreachable: {0}")]
    Unreachable(io::Error),
    #[error("too many requests in flight")]
    Overloaded,
    /// A ping could not be sent within its budget: another exchange held the peer's NSTART
    /// slot all along. `answered_meanwhile` tells whether the peer answered that exchange.
    #[error("another exchange with the peer held its slot for the whole budget (peer answered meanwhile: {answered_meanwhile})")]
    PeerBusy { answered_meanwhile: bool },
    #[error("endpoint shut down")]
    Cancelled,
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("I/O error: {0}")]
    Io(io::Error),
}
