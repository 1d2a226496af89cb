//! # coap-endpoint
//!
//! The coap-gateway's CoAP layer: an RFC 7252 messaging layer on tokio, with coap-lite as the
//! codec. It knows nothing of the gateway: settings come in as [`TransmissionParams`] (with
//! [`admission::AdmissionSettings`]), counters go out through [`EndpointHooks`].
//!
//! One [`Endpoint`] owns the UDP sockets (one per bind address; IPv6 sockets are bound
//! `IPV6_V6ONLY`, so `0.0.0.0:P` and `[::]:P` coexist) and runs one receive loop per socket.
//! The same sockets serve the RD and send every request the gateway makes, so devices see the
//! RD's own address and port; a request leaves from the socket of the peer's address family.
//! Tasks are spawned with `tokio::spawn`, so the endpoint runs in plain tokio and inside an
//! actix System alike.
//!
//! # Server side
//! ```ignore
//! struct Rd;
//! impl RequestHandler for Rd {
//!     fn handle(&self, req: InboundRequest) -> HandlerFuture {
//!         // Synchronous answers are polled once inline (no task spawn):
//!         futures::future::ready(OutboundResponse::new(Code::CONTENT)
//!             .with_payload(40, b"</rd>".to_vec())).boxed()
//!     }
//! }
//! let ep = Endpoint::bind(&addrs, TransmissionParams::default(), Arc::new(Rd)).await?;
//! ```
//! - Deduplication by (peer, Message ID) for EXCHANGE_LIFETIME, bounded by
//!   `dedup_capacity` entries and `dedup_max_bytes` of memory (bookkeeping included): a
//!   duplicate CON gets the cached response and the handler runs once; a duplicate arriving
//!   while the handler runs is dropped.
//! - A handler slower than `separate_response_after` (ACK_TIMEOUT/2) gets the CON
//!   acknowledged with an empty ACK and its answer sent as a separate CON, retransmitted until
//!   ACKed (RFC 7252 §5.2.2).
//! - Piggybacked responses to CON (ACK), NON responses to NON; an empty CON gets RST;
//!   a malformed CON gets RST, malformed NON/ACK/RST are dropped; an unknown critical option
//!   gives 4.02, a malformed option value 4.00, an unknown method 4.05, Proxy-Uri 5.05.
//! - Block2: a response larger than `block_size` (or than the block the client asked for) is
//!   sliced, with Size2; the whole body is cached per (peer, request) for 60 s so follow-up
//!   blocks come from one representation (on a miss the handler is re-run).
//! - Block1: request bodies are reassembled (2.31 Continue per block) up to `max_body`
//!   (4.13 with Size1 above it, 4.08 on gaps); the handler sees the whole body.
//! - Multicast (RFC 7252 §8, Linux): [`Endpoint::join_multicast`] joins a group on the
//!   wildcard socket of its family; requests sent to a group are flagged
//!   (`InboundRequest::multicast`), never ACKed/RST, and only 2.xx answers leave, as NON after
//!   a random `multicast_leisure` delay (see `endpoint.rs`, `multicast.rs`).
//! - Observe (RFC 7641): a GET with Observe=0 whose response is 2.xx with
//!   `OutboundResponse::observe = Some(key)` registers the peer. [`ServerHandle::notify`]
//!   re-runs the handler with each observer's stored request and sends a CON notification
//!   with a fresh, increasing Observe value; RST, an unacknowledged notification, or a non-2.xx
//!   answer removes the observer; so does a GET with Observe=1 or without Observe on the token.
//!
//! # Client side ([`CoapClient`], from [`Endpoint::client`], cheap to clone)
//! - [`CoapClient::request`]: 8-byte random tokens, MIDs per socket, CON retransmission with
//!   ACK_TIMEOUT × random(1, ACK_RANDOM_FACTOR) doubling up to MAX_RETRANSMIT; separate
//!   responses (empty ACK, then a CON response we ACK); RST fails at once ([`ClientError::Reset`]);
//!   NON requests; Block1 for payloads over `block_size`; Block2 reassembled (ETag checked).
//!   `ClientRequest::timeout` bounds everything (default MAX_TRANSMIT_WAIT).
//! - [`CoapClient::ping`]: empty CON retransmitted within the budget; `Ok(rtt)` on RST/ACK.
//!   It waits for the peer's NSTART slot but takes no overall slot (its caller bounds it); if
//!   another exchange holds the slot all along it fails with [`ClientError::PeerBusy`], saying
//!   whether the peer answered that exchange meanwhile (`peer_slot`).
//! - [`CoapClient::observe`]: an [`Observation`] with `first` and `next()`; notifications
//!   are ACKed, stale ones dropped by the RFC 7641 §3.4 rule; `cancel()` deregisters with
//!   Observe=1; dropping it makes later notifications answered with RST.
//! - Bounds: NSTART per peer and `max_in_flight` overall; waiting for a slot counts against the
//!   request's budget ([`ClientError::Overloaded`] when it runs out).
//!
//! # Files
//! `code` (codes, methods), `codec` (wire format and RFC error rules), `bounded_cache` (the one
//! TTL cache bounded by entries and bytes, under `dedup` and the Block2 cache), `dedup`, `block`
//! (Block options, slicing, Block1 reassembly, Block2 cache), `observe` (freshness rule,
//! observer registry), `exchange` (back-off, tokens), `message` (request/response values),
//! `params`, `error`, `peer_slot`, `admission` (rate, handler and amplification limits) — all
//! pure; `hooks` (the application's callbacks); `endpoint` (sockets, receive loop, server) and `client` use
//! tokio; `multicast` (group membership, interface lookup) and `batch_io` are Linux socket code.

pub mod admission;
#[cfg(target_os = "linux")]
mod batch_io;
pub mod block;
mod bounded_cache;
mod client;
mod code;
pub mod codec;
pub mod dedup;
pub mod dtls;
mod endpoint;
mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzz_api;
mod hooks;
mod message;
#[cfg(target_os = "linux")]
pub mod multicast;
pub mod observe;
mod params;
mod peer_slot;

pub use block::BlockOption;
pub use client::{CoapClient, Observation};
pub use code::{Code, Method};
pub use dtls::{CertificateFiles, DtlsError, DtlsServerConfig, DtlsStats, PskStore};
pub use endpoint::{Endpoint, HandlerFuture, RequestHandler, ServerHandle};
pub use error::{ClientError, CoapError, ProtocolError};
pub use hooks::{EndpointHooks, NoHooks};
pub use message::{ClientRequest, ClientResponse, InboundRequest, ObserveKey, OutboundResponse};
pub use params::{normalize_block_size, TransmissionParams, DEFAULT_LEISURE};
