//! The link-format API as other modules use it, through the crate's public paths.
//!
//! The unit tests beside the code (src/link_format/tests/) cover the grammar; these check the
//! re-exports and the RD's typical flow. `throughput` is a release-only measurement, run with
//! `cargo test --release --test link_format -- --ignored --nocapture`; it asserts no timing.

use std::time::Instant;

use coap_gateway::link_format::{parse, serialize, write_link, Link, LinkFormatError, Param};

#[test]
fn registration_payload_to_lookup_reply() {
    let payload = "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\n\
                   </actuators/led>;rt=\"light\";if=\"actuator\"";
    let links = parse(payload).expect("device payload is valid link-format");

    // What a resource lookup does: resolve targets against the base, add the anchor.
    let base = "coap://[2001:db8::7]:5683";
    let mut reply = String::new();
    for (index, link) in links.iter().enumerate() {
        if index > 0 {
            reply.push(',');
        }
        let mut resolved = Link::new(format!("{base}{}", link.target));
        resolved.params = link.params.clone();
        resolved.params.push(Param::new("anchor", Some(base)));
        write_link(&mut reply, &resolved);
    }
    assert_eq!(
        reply,
        "<coap://[2001:db8::7]:5683/sensors/temp>;rt=\"temperature\";if=\"sensor\";obs;\
         anchor=\"coap://[2001:db8::7]:5683\",\
         <coap://[2001:db8::7]:5683/actuators/led>;rt=\"light\";if=\"actuator\";\
         anchor=\"coap://[2001:db8::7]:5683\""
    );
    let back = parse(&reply).expect("our own output parses");
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].anchor(), Some(base));
    assert!(back[0].has("obs"));
}

#[test]
fn bad_payload_reports_where() {
    let error = parse("</a>;rt=\"unterminated").unwrap_err();
    assert_eq!(error, LinkFormatError::UnterminatedQuote { at: 8 });
    assert_eq!(error.at(), 8);
    assert_eq!(
        error.to_string(),
        "unterminated quoted string opened at byte 8"
    );
}

#[test]
fn empty_lookup_result_is_an_empty_document() {
    assert_eq!(serialize(&[]), "");
    assert_eq!(parse(""), Ok(Vec::new()));
}

/// Parses and serializes documents of growing size; time per byte should stay flat (linear).
#[test]
#[ignore = "release-only measurement; prints figures, asserts no timing"]
fn throughput() {
    let unit = "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\";obs;ct=40;\
                title=\"Temp, \\\"outdoor\\\"; north\",\n";
    for links in [100, 1_000, 10_000, 100_000] {
        let document = unit.repeat(links - 1) + unit.trim_end_matches([',', '\n']);
        let rounds = (2_000_000 / links).max(3);
        let start = Instant::now();
        let mut parsed = Vec::new();
        for _ in 0..rounds {
            parsed = parse(&document).expect("benchmark document is valid");
        }
        let parse_time = start.elapsed() / rounds as u32;
        assert_eq!(parsed.len(), links);
        let start = Instant::now();
        let mut text = String::new();
        for _ in 0..rounds {
            text = serialize(&parsed);
        }
        let serialize_time = start.elapsed() / rounds as u32;
        assert_eq!(parse(&text).expect("reparse"), parsed);
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
