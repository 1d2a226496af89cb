//! cargo-fuzz target: raw bytes through `coap_endpoint::fuzz_api::datagram_invariant`: `peek`
//! and `decode` agree on type and MID, a decoded packet re-encodes to itself, and parsing it as
//! a request or response never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coap_endpoint::fuzz_api::datagram_invariant(data);
});
