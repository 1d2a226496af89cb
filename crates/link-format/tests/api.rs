//! The link-format API as a dependent crate uses it, through the crate's public paths.
//!
//! The unit tests beside the code (src/tests/) cover the grammar; these check the re-exports and
//! a Resource Directory's typical flow. Parse and serialize throughput is measured by the
//! gateway's `cargo bench --bench link_format`, not here.

use link_format::{parse, serialize, write_link, Link, LinkFormatError, Param};

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
