//! cargo-fuzz target: raw bytes through `coap_endpoint::fuzz_api::dtls_datagram_invariant`,
//! everything the DTLS demultiplexer does before OpenSSL: record and ClientHello parsing, the
//! stateless cookie and the HelloVerifyRequest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    coap_endpoint::fuzz_api::dtls_datagram_invariant(data);
});
