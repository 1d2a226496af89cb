//! Unit tests for the link-format parser and serializer (no I/O, no sockets needed).
//!
//! `parse_valid`: RFC 6690 / RFC 9176 examples and the accepted edge cases. `parse_errors`: every
//! error variant with its offset. `quoting`: the serializer output and its quoting policy.
//! `round_trip`: examples and randomly generated links survive serialize→parse. `robustness`:
//! mutated and random input never panics and errors always point inside the input.
//! `edge_cases`: escapes and delimiters inside quotes, unterminated `<`, empty and non-UTF-8
//! input. `property`: the fuzz target's invariant on fixed-seed random bytes. `serde_form`: the
//! stored form behind the `serde` feature.

mod edge_cases;
mod parse_errors;
mod parse_valid;
mod property;
mod quoting;
mod robustness;
mod round_trip;
#[cfg(feature = "serde")]
mod serde_form;

use super::{parse, serialize, Link, Param};

/// Parses `input`, failing the test with the error if it does not parse.
fn parse_ok(input: &str) -> Vec<Link> {
    match parse(input) {
        Ok(links) => links,
        Err(error) => panic!("{input:?} should parse, got {error}"),
    }
}

/// Asserts that `links` serialize to text that parses back to the same links.
fn assert_round_trips(links: &[Link]) {
    let text = serialize(links);
    match parse(&text) {
        Ok(back) => assert_eq!(back, links, "round trip through {text:?}"),
        Err(error) => panic!("serialized {links:?} as {text:?}, which fails to parse: {error}"),
    }
}

fn param(name: &str, value: Option<&str>) -> Param {
    Param::new(name, value)
}
