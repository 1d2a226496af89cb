//! cargo-fuzz target: raw bytes through `coap_endpoint::fuzz_api::dtls_record_invariant`, an
//! established session's own record layer: record parsing, the replay window and the AEAD.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coap_endpoint::fuzz_api::dtls_record_invariant(data);
});
