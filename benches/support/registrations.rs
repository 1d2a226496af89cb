//! The registration every in-process registry benchmark writes: endpoint `bench-node-NNNNNN`,
//! `et=oic.d.sensor`, three links (temperature, light, firmware), as the RD benchmark's devices
//! register. Every tenth endpoint's light is `rt=light-lux`, so a selective filter matches 10%.

use std::net::SocketAddr;
use std::time::Instant;

use actix::Addr;
use coap_gateway::registry::{EndpointName, Register, Registry};
use futures::stream::{FuturesUnordered, StreamExt};
use link_format::{Link, Param};

/// Register endpoints `0..n` through `registry`, `in_flight` at a time (each acknowledged,
/// durable), and say how long it took.
#[allow(dead_code)] // not every bench that includes this file fills a registry this way
pub async fn register_all(registry: &Addr<Registry>, n: usize, in_flight: usize) {
    let t0 = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        if pending.len() >= in_flight {
            pending.next().await;
        }
        let registry = registry.clone();
        pending.push(async move {
            registry
                .send(register(i))
                .await
                .expect("mailbox")
                .expect("registered")
        });
    }
    while pending.next().await.is_some() {}
    eprintln!("registered {n} in {:?}", t0.elapsed());
}

pub fn register(i: usize) -> Register {
    Register {
        identity: None,
        ep: EndpointName::new(format!("bench-node-{i:06}")).expect("a valid generated name"),
        d: None,
        base: None,
        lifetime_s: 86_400,
        attrs: vec![Param::new("et", Some("oic.d.sensor"))],
        links: vec![
            Link::new("/sensors/temp")
                .with("rt", Some("temperature"))
                .with("if", Some("core.s"))
                .with("obs", None),
            Link::new("/sensors/light")
                .with("rt", Some(if i % 10 == 0 { "light-lux" } else { "light" }))
                .with("ct", Some("0")),
            Link::new(format!("/fw/{i}")).with("title", Some("firmware")),
        ],
        source: SocketAddr::from(([127, 0, 0, 1], 10_000 + (i % 50_000) as u16)),
    }
}
