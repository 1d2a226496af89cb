//! The invariant the `parse` fuzz target checks (`fuzz/fuzz_targets/parse.rs`), here so that the
//! fixed-seed property test (`src/tests/property.rs`) runs exactly the same check in
//! `cargo test` on stable, where cargo-fuzz cannot run.
//!
//! Not part of the crate's API (hidden from the docs). The function panics only when the
//! invariant fails: that panic is the fuzzer's finding. Nothing the input holds may make the
//! parser or the serializer panic.

use crate::{parse, parse_bytes, serialize, LinkFormatError};

/// Raw bytes through [`parse_bytes`]. Invariants:
/// - an error points inside the input: at the first invalid byte for non-UTF-8 input (and only
///   then is it [`LinkFormatError::NotUtf8`]), on a char boundary otherwise;
/// - links that parse serialize to text that parses back to the same links, and serializing
///   those again gives the same text (the serializer's output is stable).
pub fn parse_invariant(data: &[u8]) {
    match parse_bytes(data) {
        Err(error) => {
            let at = error.at();
            assert!(at <= data.len(), "{error} points past {} bytes", data.len());
            match (std::str::from_utf8(data), &error) {
                (Err(utf8), LinkFormatError::NotUtf8 { at }) => {
                    assert_eq!(*at, utf8.valid_up_to(), "NotUtf8 at the wrong byte");
                }
                (Err(_), _) => panic!("non-UTF-8 input reported as {error}"),
                (Ok(_), LinkFormatError::NotUtf8 { .. }) => {
                    panic!("UTF-8 input reported as {error}")
                }
                (Ok(text), _) => assert!(text.is_char_boundary(at), "{error} inside a char"),
            }
        }
        Ok(links) => {
            let text = serialize(&links);
            let again = match parse(&text) {
                Ok(again) => again,
                Err(error) => panic!("serialized links do not parse ({error}): {text:?}"),
            };
            assert_eq!(again, links, "serialize→parse changed the links: {text:?}");
            assert_eq!(serialize(&again), text, "serializing twice differs");
        }
    }
}
