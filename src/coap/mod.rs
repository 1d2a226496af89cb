//! The CoAP endpoint: the project's own RFC 7252 messaging layer over coap-lite's codec.
//!
//! (API doc filled in below.)

pub mod block;
mod client;
mod code;
pub mod codec;
pub mod dedup;
mod endpoint;
mod error;
pub mod exchange;
mod message;
pub mod observe;
mod params;

pub use block::BlockOption;
pub use client::{CoapClient, Observation};
pub use code::{Code, Method};
pub use endpoint::{Endpoint, HandlerFuture, RequestHandler, ServerHandle};
pub use error::{ClientError, CoapError, ProtocolError};
pub use message::{ClientRequest, ClientResponse, InboundRequest, ObserveKey, OutboundResponse};
pub use params::TransmissionParams;
