//! Link-format parse and serialize throughput on documents of growing size (100 to 100,000
//! links): the time per link should stay flat, i.e. both are linear. Prints one line per size;
//! asserts only that every document round-trips.
//!
//! `cargo bench --bench link_format` (release). Pure CPU work, no sockets; bounded by a fixed
//! number of rounds per size.

use std::time::Instant;

use link_format::{parse, serialize};

fn main() {
    let unit = "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\";obs;ct=40;\
                title=\"Temp, \\\"outdoor\\\"; north\",\n";
    for links in [100usize, 1_000, 10_000, 100_000] {
        let document = unit.repeat(links - 1) + unit.trim_end_matches([',', '\n']);
        let rounds = (2_000_000 / links).max(3);
        let start = Instant::now();
        let mut parsed = Vec::new();
        for _ in 0..rounds {
            parsed = match parse(&document) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("benchmark document does not parse: {e}");
                    std::process::exit(1);
                }
            };
        }
        let parse_time = start.elapsed() / rounds as u32;
        let start = Instant::now();
        let mut text = String::new();
        for _ in 0..rounds {
            text = serialize(&parsed);
        }
        let serialize_time = start.elapsed() / rounds as u32;
        if parsed.len() != links || parse(&text).ok().as_ref() != Some(&parsed) {
            eprintln!("round trip failed at {links} links");
            std::process::exit(1);
        }
        println!(
            "{links:>7} links {:>9} B: parse {:>10.2?} ({:>6.1} MB/s, {:>5.0} ns/link), \
             serialize {:>10.2?} ({:>6.1} MB/s)",
            document.len(),
            parse_time,
            document.len() as f64 / parse_time.as_secs_f64() / 1e6,
            parse_time.as_nanos() as f64 / links as f64,
            serialize_time,
            text.len() as f64 / serialize_time.as_secs_f64() / 1e6,
        );
    }
}
