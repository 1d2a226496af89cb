//! cargo-fuzz target: raw bytes through `coap_gateway::fuzz_api::platform_frame` (see that function for
//! what is called and which oracles are checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coap_gateway::fuzz_api::platform_frame(data);
});
