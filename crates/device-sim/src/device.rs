//! One simulated device's resources, served through the project's CoAP `Endpoint` as its
//! `RequestHandler`: a temperature sensor that changes every second and can be observed
//! (RFC 7641), an LED actuator (GET/PUT), and `/.well-known/core` (RFC 6690 §4).
//!
//! Created by `sim::fleet` once per device; every request is counted in the shared
//! [`RequestCounts`] that `device-sim` prints on exit.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::{self, FutureExt};

use super::rate::PerSecond;

use coap_endpoint::{
    Code, HandlerFuture, InboundRequest, Method, ObserveKey, OutboundResponse, RequestHandler,
};

/// The links every simulated device registers and serves at `/.well-known/core`.
pub const LINKS: &str = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
</actuators/led>;rt=\"light\";if=\"actuator\"";

const CT_TEXT_PLAIN: u16 = 0;
const CT_LINK_FORMAT: u16 = 40;

/// The Observe key of `/sensors/temp`.
pub fn temperature_key() -> ObserveKey {
    ObserveKey("/sensors/temp".into())
}

/// Device `index`'s temperature at Unix second `now_s`: a sawtooth from 20.0 to 29.9 that
/// moves 0.1 every second, phase-shifted per device so devices differ.
pub fn temperature(index: usize, now_s: u64) -> String {
    let step = (now_s + index as u64 * 7) % 100;
    format!("{}.{}", 20 + step / 10, step % 10)
}

/// Requests served, by resource, over the whole fleet.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Temperature representations served with Observe (set-ups and notifications) per
    /// Unix second (what the devices sent, second by second).
    pub observe_per_second: PerSecond,
    /// Notifications the fleet started per Unix second (one per observed device and second).
    pub notified_per_second: PerSecond,
    /// Every GET of the sensor; a notification re-runs the observer's GET, so it counts too.
    pub temp_get: AtomicU64,
    /// Those GETs that carried Observe: 0 (registrations and the notifications they cause).
    pub temp_observe: AtomicU64,
    pub led_get: AtomicU64,
    pub led_put: AtomicU64,
    pub well_known: AtomicU64,
    pub other: AtomicU64,
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "GET /sensors/temp {} (with Observe, notifications included: {}), GET /actuators/led {}, \
             PUT /actuators/led {}, GET /.well-known/core {}, other {}",
            get(&self.temp_get),
            get(&self.temp_observe),
            get(&self.led_get),
            get(&self.led_put),
            get(&self.well_known),
            get(&self.other)
        )
    }
}

/// The request handler of one device.
pub struct DeviceHandler {
    index: usize,
    led_on: AtomicBool,
    /// The Unix second of the current reading: the sensor is sampled once a second (by the
    /// fleet, for every device at the same instant) and every GET and notification serves
    /// that sample. Serving the wall clock's value instead made a notification that ran late
    /// (past the next second) carry the next second's value, and the next sample then saw
    /// nothing new for that device: one device-second skipped, another doubled.
    sampled_second: AtomicU64,
    counts: Arc<RequestCounts>,
}

impl DeviceHandler {
    pub fn new(index: usize, counts: Arc<RequestCounts>) -> Self {
        DeviceHandler {
            index,
            led_on: AtomicBool::new(false),
            sampled_second: AtomicU64::new(crate::time::now_ms() / 1000),
            counts,
        }
    }

    /// Take the sample of Unix second `now_s`; true when that is a new value (observers are
    /// then to be notified), false when this second was already sampled.
    pub fn sample(&self, now_s: u64) -> bool {
        self.sampled_second.swap(now_s, Ordering::Relaxed) != now_s
    }

    fn respond(&self, req: &InboundRequest) -> OutboundResponse {
        let count = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
        match (path.as_slice(), req.method) {
            (["sensors", "temp"], Method::Get) => {
                count(&self.counts.temp_get);
                if req.observe == Some(0) {
                    count(&self.counts.temp_observe);
                    self.counts
                        .observe_per_second
                        .add(crate::time::now_ms() / 1000, 1);
                }
                let value = temperature(self.index, self.sampled_second.load(Ordering::Relaxed));
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(CT_TEXT_PLAIN, value.into_bytes())
                    .with_max_age(1)
                    .with_observe(temperature_key())
            }
            (["actuators", "led"], Method::Get) => {
                count(&self.counts.led_get);
                let state = if self.led_on.load(Ordering::Relaxed) {
                    "on"
                } else {
                    "off"
                };
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(CT_TEXT_PLAIN, state.as_bytes().to_vec())
            }
            (["actuators", "led"], Method::Put) => {
                count(&self.counts.led_put);
                match req.payload.as_slice() {
                    b"on" | b"1" => self.led_on.store(true, Ordering::Relaxed),
                    b"off" | b"0" => self.led_on.store(false, Ordering::Relaxed),
                    _ => {
                        return OutboundResponse::new(Code::BAD_REQUEST)
                            .with_diagnostic("payload must be on, off, 1 or 0")
                    }
                }
                OutboundResponse::new(Code::CHANGED)
            }
            ([".well-known", "core"], Method::Get) => {
                count(&self.counts.well_known);
                OutboundResponse::new(Code::CONTENT)
                    .with_payload(CT_LINK_FORMAT, LINKS.as_bytes().to_vec())
            }
            (["sensors", "temp"] | ["actuators", "led"] | [".well-known", "core"], _) => {
                count(&self.counts.other);
                OutboundResponse::new(Code::METHOD_NOT_ALLOWED)
            }
            _ => {
                count(&self.counts.other);
                OutboundResponse::new(Code::NOT_FOUND)
            }
        }
    }
}

impl RequestHandler for DeviceHandler {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        future::ready(self.respond(&req)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_moves_every_second_and_stays_in_range() {
        let a = temperature(0, 1_000);
        let b = temperature(0, 1_001);
        assert_ne!(a, b);
        assert_ne!(temperature(0, 1_000), temperature(1, 1_000));
        for s in 0..200 {
            let v: f64 = temperature(3, s).parse().unwrap();
            assert!((20.0..30.0).contains(&v), "{v}");
        }
    }
}
