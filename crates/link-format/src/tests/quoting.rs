//! The serializer's exact output: separators and the quoting policy.

use crate::{serialize, write_link, Link};

#[test]
fn no_links_is_an_empty_document() {
    assert_eq!(serialize(&[]), "");
}

#[test]
fn links_joined_by_comma_without_whitespace() {
    let links = [
        Link::new("/sensors/temp")
            .with("rt", Some("temperature"))
            .with("if", Some("sensor"))
            .with("obs", None),
        Link::new("/actuators/led")
            .with("rt", Some("light"))
            .with("if", Some("actuator")),
    ];
    assert_eq!(
        serialize(&links),
        "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,\
         </actuators/led>;rt=\"light\";if=\"actuator\""
    );
}

#[test]
fn relation_lists_anchor_and_title_are_always_quoted() {
    let link = Link::new("/t")
        .with("anchor", Some("/sensors/temp"))
        .with("rel", Some("alternate"))
        .with("rev", Some("x"))
        .with("rt", Some("core.rd"))
        .with("if", Some("sensor"))
        .with("title", Some("T"));
    assert_eq!(
        serialize(&[link]),
        "</t>;anchor=\"/sensors/temp\";rel=\"alternate\";rev=\"x\";rt=\"core.rd\";if=\"sensor\";title=\"T\""
    );
}

#[test]
fn always_quoted_names_match_case_insensitively() {
    let link = Link::new("/t").with("RT", Some("x"));
    assert_eq!(serialize(&[link]), "</t>;RT=\"x\"");
}

#[test]
fn tokens_stay_bare_everything_else_is_quoted() {
    let link = Link::new("/a")
        .with("ct", Some("40"))
        .with("ep", Some("node-5_x.y"))
        .with("sz", Some("262144"))
        .with("hreflang", Some("en-US"))
        .with("title*", Some("UTF-8'de'n%c3%a4chstes"))
        .with("ct", Some("40 41"))
        .with("base", Some("coap://[2001:db8::1]:5683"))
        .with("type", Some("text/plain"))
        .with("d", Some(""))
        .with("x", Some("ü"));
    assert_eq!(
        serialize(&[link]),
        "</a>;ct=40;ep=node-5_x.y;sz=262144;hreflang=en-US;title*=UTF-8'de'n%c3%a4chstes;\
         ct=\"40 41\";base=\"coap://[2001:db8::1]:5683\";type=\"text/plain\";d=\"\";x=\"ü\""
    );
}

#[test]
fn quotes_and_backslashes_are_escaped_nothing_else() {
    let link = Link::new("/a").with("title", Some("say \"hi\" \\ ,;= \té"));
    assert_eq!(
        serialize(&[link]),
        "</a>;title=\"say \\\"hi\\\" \\\\ ,;= \té\""
    );
}

#[test]
fn write_link_appends_without_separator() {
    let mut out = String::from("prefix:");
    write_link(&mut out, &Link::new("/a").with("obs", None));
    write_link(&mut out, &Link::new("/b"));
    assert_eq!(out, "prefix:</a>;obs</b>");
}
