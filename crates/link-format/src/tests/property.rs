//! The `parse` fuzz target's invariant ([`crate::fuzz_api::parse_invariant`]) on fixed-seed
//! pseudo-random bytes, so that `cargo test` on stable checks what cargo-fuzz checks on nightly.
//! Inputs are byte-level: cuts inside multi-byte characters and stray high bytes reach the UTF-8
//! check, delimiter-heavy noise and mutated RFC examples reach every lexer state.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::round_trip::SAMPLES;
use crate::fuzz_api::parse_invariant;
use crate::{parse_bytes, LinkFormatError};

/// Delimiters, a few name and value bytes, controls, and bytes that break or begin UTF-8.
const NOISE: &[u8] = b"<>;,=\"\\ \t\r\n*art/0\x00\x7f\x80\xbf\xc3\xa9\xe6\xb8\xa9\xed\xf0\xff";

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let noise = *NOISE.choose(rng).expect("noise is not empty");
        let index = rng.gen_range(0..=bytes.len());
        match rng.gen_range(0..3) {
            0 => bytes.insert(index, noise),
            1 if index < bytes.len() => bytes[index] = noise,
            _ if index < bytes.len() => {
                bytes.remove(index);
            }
            _ => bytes.push(noise),
        }
    }
    bytes
}

#[test]
fn parse_invariant_holds_on_thirty_thousand_random_byte_strings() {
    let mut rng = StdRng::seed_from_u64(6690);
    let mut inputs = Vec::new();
    // Every byte-level truncation of every sample: some cut a multi-byte character in two.
    for sample in SAMPLES {
        for cut in 0..=sample.len() {
            inputs.push(sample.as_bytes()[..cut].to_vec());
        }
    }
    while inputs.len() < 30_000 {
        let input = match rng.gen_range(0..3) {
            0 => {
                let sample = SAMPLES.choose(&mut rng).expect("samples are not empty");
                mutate(&mut rng, sample.as_bytes())
            }
            1 => {
                let len = rng.gen_range(0..48);
                (0..len)
                    .map(|_| *NOISE.choose(&mut rng).expect("noise is not empty"))
                    .collect()
            }
            _ => {
                let len = rng.gen_range(0..32);
                (0..len).map(|_| rng.gen()).collect()
            }
        };
        inputs.push(input);
    }

    let (mut parsed, mut not_utf8, mut rejected) = (0, 0, 0);
    for input in &inputs {
        parse_invariant(input);
        match parse_bytes(input) {
            Ok(_) => parsed += 1,
            Err(LinkFormatError::NotUtf8 { .. }) => not_utf8 += 1,
            Err(_) => rejected += 1,
        }
    }
    // Each branch of the invariant must have run many times, or the generator is too narrow.
    for (what, count) in [
        ("parsed", parsed),
        ("not UTF-8", not_utf8),
        ("rejected", rejected),
    ] {
        assert!(
            count > 500,
            "only {count} inputs {what} (of {})",
            inputs.len()
        );
    }
}
