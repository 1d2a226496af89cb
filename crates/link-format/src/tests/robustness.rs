//! The parser never panics: random, truncated and mutated documents (fixed seeds, bounded count).
//! Every error must point at a char boundary inside the input; every success must round-trip.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::assert_round_trips;
use super::round_trip::SAMPLES;
use crate::parse;

/// Delimiters dominate so that random text reaches every lexer state.
const NOISE: &[char] = &[
    '<', '>', ';', ',', '=', '"', '\\', ' ', '\t', '\r', '\n', '*', 'a', 'r', 't', '/', '0', '\0',
    '\u{7f}', 'é', '温', '🙂', '\u{a0}', '\u{85}',
];

fn check(input: &str) {
    match parse(input) {
        Ok(links) => assert_round_trips(&links),
        Err(error) => {
            let at = error.at();
            assert!(at <= input.len(), "{error} outside {input:?}");
            assert!(input.is_char_boundary(at), "{error} not on a char boundary");
        }
    }
}

fn mutate(rng: &mut StdRng, input: &str) -> String {
    let mut chars: Vec<char> = input.chars().collect();
    for _ in 0..rng.gen_range(1..4) {
        let noise = *NOISE.choose(rng).expect("noise is not empty");
        let index = rng.gen_range(0..=chars.len());
        match rng.gen_range(0..3) {
            0 => chars.insert(index, noise),
            1 if index < chars.len() => chars[index] = noise,
            _ if index < chars.len() => {
                chars.remove(index);
            }
            _ => chars.push(noise),
        }
    }
    chars.into_iter().collect()
}

#[test]
fn twenty_thousand_hostile_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xC0AB);
    let mut inputs = 0;
    let mut accepted = 0;

    // Every truncation of every sample, at every char boundary.
    for sample in SAMPLES {
        for (cut, _) in sample.char_indices() {
            check(&sample[..cut]);
            inputs += 1;
        }
    }
    while inputs < 20_000 {
        let input = if rng.gen_bool(0.5) {
            let sample = SAMPLES.choose(&mut rng).expect("samples are not empty");
            mutate(&mut rng, sample)
        } else {
            let len = rng.gen_range(0..40);
            (0..len)
                .map(|_| *NOISE.choose(&mut rng).expect("noise is not empty"))
                .collect()
        };
        if parse(&input).is_ok() {
            accepted += 1;
        }
        check(&input);
        inputs += 1;
    }
    // Mutations must sometimes stay valid, or the round-trip branch of `check` was never run.
    assert!(accepted > 100, "only {accepted} generated inputs parsed");
}

#[test]
fn deeply_repetitive_input_is_handled() {
    // Long runs of one construct: no recursion, so no stack to exhaust.
    let many_links = "</a>;obs,".repeat(20_000) + "</a>";
    assert_eq!(parse(&many_links).map(|links| links.len()), Ok(20_001));
    let many_params = format!("</a>{}", ";rt=\"x\"".repeat(20_000));
    assert_eq!(
        parse(&many_params).map(|links| links[0].params.len()),
        Ok(20_000)
    );
    let unterminated = format!("</a>;t=\"{}", "\\\"".repeat(20_000));
    assert!(parse(&unterminated).is_err());
}
