//! cargo-fuzz target: raw bytes through `link_format::fuzz_api::parse_invariant`: `parse_bytes`
//! never panics, its errors point inside the input, and what parses serializes to text that
//! parses back to the same links.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    link_format::fuzz_api::parse_invariant(data);
});
