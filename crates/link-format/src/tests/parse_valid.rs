//! Documents the parser must accept, and exactly what it must make of them.

use super::{param, parse_ok};
use crate::Link;

#[test]
fn rfc6690_section5_well_known_core() {
    let links = parse_ok(
        "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
         </sensors/light>;rt=\"light-lux\";if=\"sensor\"",
    );
    assert_eq!(
        links,
        vec![
            Link::new("/sensors/temp")
                .with("rt", Some("temperature-c"))
                .with("if", Some("sensor")),
            Link::new("/sensors/light")
                .with("rt", Some("light-lux"))
                .with("if", Some("sensor")),
        ]
    );
}

#[test]
fn rfc6690_section5_anchor_and_describedby_with_line_breaks() {
    // RFC 6690 §5 prints this document across lines, including one break before `;rel`.
    let links = parse_ok(
        "</sensors>;ct=40;title=\"Sensor Index\",\n\
         </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n\
         </sensors/light>;rt=\"light-lux\";if=\"sensor\",\n\
         <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\"\n\
         ;rel=\"describedby\",\n\
         </t>;anchor=\"/sensors/temp\";rel=\"alternate\"",
    );
    assert_eq!(links.len(), 5);
    assert_eq!(
        links[0],
        Link::new("/sensors")
            .with("ct", Some("40"))
            .with("title", Some("Sensor Index"))
    );
    assert_eq!(
        links[3],
        Link::new("http://www.example.com/sensors/t123")
            .with("anchor", Some("/sensors/temp"))
            .with("rel", Some("describedby"))
    );
    assert_eq!(links[3].anchor(), Some("/sensors/temp"));
    assert_eq!(
        links[4],
        Link::new("/t")
            .with("anchor", Some("/sensors/temp"))
            .with("rel", Some("alternate"))
    );
}

#[test]
fn rfc6690_size_and_content_type_stay_strings() {
    let links = parse_ok("</firmware/v2.1>;rt=\"firmware\";sz=262144;ct=40");
    assert_eq!(links[0].value("sz"), Some("262144"));
    assert_eq!(links[0].value("ct"), Some("40"));
}

#[test]
fn rfc9176_discovery_reply_with_bare_and_quoted_lists() {
    let links = parse_ok(
        "</rd>;rt=core.rd;ct=\"40 65225\",\
         </rd-lookup/res>;rt=core.rd-lookup-res;ct=40;obs,\
         </rd-lookup/ep>;rt=core.rd-lookup-ep",
    );
    assert_eq!(
        links,
        vec![
            Link::new("/rd")
                .with("rt", Some("core.rd"))
                .with("ct", Some("40 65225")),
            Link::new("/rd-lookup/res")
                .with("rt", Some("core.rd-lookup-res"))
                .with("ct", Some("40"))
                .with("obs", None),
            Link::new("/rd-lookup/ep").with("rt", Some("core.rd-lookup-ep")),
        ]
    );
}

#[test]
fn rfc9176_endpoint_lookup_reply() {
    let links = parse_ok(
        "</reg/1234>;base=\"coap://[2001:db8:3::127]:61616\";ep=node5;rt=core.rd-ep,\
         </reg/4521>;base=\"coap://[2001:db8:3::129]:61616\";ep=node7;d=floor-3;rt=core.rd-ep",
    );
    assert_eq!(links.len(), 2);
    assert_eq!(
        links[0].value("base"),
        Some("coap://[2001:db8:3::127]:61616")
    );
    assert_eq!(links[1].value("ep"), Some("node7"));
    assert_eq!(links[1].value("d"), Some("floor-3"));
    assert_eq!(links[1].value("rt"), Some("core.rd-ep"));
}

#[test]
fn rfc9176_resource_lookup_reply_with_absolute_target_and_anchor() {
    let links = parse_ok(
        "<coap://[2001:db8:3::123]:61616/temp>;rt=\"temperature\";\
         anchor=\"coap://[2001:db8:3::123]:61616\"",
    );
    assert_eq!(links[0].target, "coap://[2001:db8:3::123]:61616/temp");
    assert_eq!(links[0].anchor(), Some("coap://[2001:db8:3::123]:61616"));
}

#[test]
fn aiocoap_and_riot_style_payload_with_valueless_obs() {
    let links = parse_ok(
        "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
         </actuators/led>;rt=\"light\";if=\"actuator\"",
    );
    assert!(links[0].has("obs"));
    assert_eq!(links[0].params[2], param("obs", None));
    assert_eq!(links[0].value("obs"), None);
    assert!(!links[1].has("obs"));
    assert_eq!(links[1].value("if"), Some("actuator"));
}

#[test]
fn quoted_values_keep_commas_semicolons_equals_spaces_and_unicode() {
    let links = parse_ok("</a>;title=\"x, y; z=1  Ünïcødé ☃\";rt=\"a,b\",</b>");
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].value("title"), Some("x, y; z=1  Ünïcødé ☃"));
    assert_eq!(links[0].value("rt"), Some("a,b"));
    assert_eq!(links[1], Link::new("/b"));
}

#[test]
fn escaped_quotes_and_backslashes_are_unescaped() {
    let links = parse_ok(r#"</a>;title="say \"hi\" \\ bye";x="\a\é""#);
    assert_eq!(links[0].value("title"), Some(r#"say "hi" \ bye"#));
    // quoted-pair escapes any non-control character to itself.
    assert_eq!(links[0].value("x"), Some("aé"));
}

#[test]
fn quoted_string_may_hold_a_tab() {
    let links = parse_ok("</a>;title=\"a\tb\"");
    assert_eq!(links[0].value("title"), Some("a\tb"));
}

#[test]
fn space_separated_relation_lists_stay_one_string() {
    let links = parse_ok("</a>;rel=\"alternate describedby\";rt=\"a b  c\";ct=\"40 41\"");
    assert_eq!(links[0].value("rel"), Some("alternate describedby"));
    assert_eq!(links[0].value("rt"), Some("a b  c"));
    assert_eq!(links[0].value("ct"), Some("40 41"));
}

#[test]
fn repeated_parameters_are_all_kept_in_order() {
    let links = parse_ok("</a>;rt=a;et=x;rt=b;et=y;obs;obs");
    assert_eq!(links[0].values("rt").collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(links[0].values("et").collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(links[0].value("rt"), Some("a"));
    assert_eq!(links[0].params.len(), 6);
}

#[test]
fn parameter_names_are_lowercased_values_are_not() {
    let links = parse_ok("</a>;RT=\"Temp\";If=Sensor;OBS;Title*=UTF-8'de'n%c3%a4chstes");
    assert_eq!(
        links[0].params,
        vec![
            param("rt", Some("Temp")),
            param("if", Some("Sensor")),
            param("obs", None),
            param("title*", Some("UTF-8'de'n%c3%a4chstes")),
        ]
    );
}

#[test]
fn parameter_names_accept_every_attr_char() {
    let links = parse_ok("</a>;a1!#$&+-.^_`|~=v");
    assert_eq!(links[0].params, vec![param("a1!#$&+-.^_`|~", Some("v"))]);
}

#[test]
fn bare_values_accept_every_ptoken_char() {
    let ptoken = "!#$%&'()*+-./09:<=>?@AZ[]^_`az{|}~";
    let links = parse_ok(&format!("</a>;x={ptoken}"));
    assert_eq!(links[0].value("x"), Some(ptoken));
}

#[test]
fn equals_sign_may_start_a_bare_value() {
    // `=` is a ptokenchar, so `;a==b` is name `a`, value `=b`.
    let links = parse_ok("</a>;a==b");
    assert_eq!(links[0].value("a"), Some("=b"));
}

#[test]
fn empty_quoted_value_is_an_empty_string() {
    let links = parse_ok("</a>;rt=\"\";obs");
    assert_eq!(
        links[0].params,
        vec![param("rt", Some("")), param("obs", None)]
    );
}

#[test]
fn empty_and_whitespace_only_documents_have_no_links() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok(" \t\r\n \n").is_empty());
}

#[test]
fn whitespace_around_separators_and_at_both_ends_is_ignored() {
    let compact = parse_ok("</a>;rt=x;obs,</b>;ct=40");
    for spaced in [
        "</a>;rt=x;obs,\n</b>;ct=40",
        "</a>;rt=x;obs,\r\n</b>;ct=40\r\n",
        "  </a> ; rt=x ;\tobs ,\n  </b>;ct=40 \n",
        "\n</a>\n;\nrt=x\n;\nobs\n,\n</b>\n;\nct=40\n",
    ] {
        assert_eq!(parse_ok(spaced), compact, "{spaced:?}");
    }
}

#[test]
fn target_only_links_and_empty_target() {
    assert_eq!(
        parse_ok("<>,</>,</a>"),
        vec![Link::new(""), Link::new("/"), Link::new("/a")]
    );
}

#[test]
fn target_keeps_unicode_and_uri_punctuation() {
    let target = "coap://[fe80::1]:5683/ünï/path?q=1&r=\"x\"#frag;a,b";
    let links = parse_ok(&format!("<{target}>;ct=0"));
    assert_eq!(links[0].target, target);
}

#[test]
fn star_ended_name_is_an_extended_parameter() {
    let links = parse_ok("</a>;title*=UTF-8'en'%e2%82%ac%20rates");
    assert_eq!(links[0].value("title*"), Some("UTF-8'en'%e2%82%ac%20rates"));
}
