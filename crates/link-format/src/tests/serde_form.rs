//! With the `serde` feature: the compact form the gateway's registry stores, pinned, because
//! renaming a field would make every stored registration unreadable.

use crate::{Link, Param};

#[test]
fn links_serialize_to_the_stored_short_field_names() {
    let link = Link::new("/s").with("rt", Some("t")).with("obs", None);
    let json = serde_json::to_string(&link).expect("a link serializes");
    assert_eq!(json, r#"{"t":"/s","p":[{"n":"rt","v":"t"},{"n":"obs"}]}"#);
    assert_eq!(
        serde_json::to_string(&Link::new("/bare")).expect("a link serializes"),
        r#"{"t":"/bare"}"#
    );
}

#[test]
fn stored_links_read_back_with_omitted_fields_defaulted() {
    let link: Link = serde_json::from_str(r#"{"t":"/bare"}"#).expect("stored form reads back");
    assert_eq!(link, Link::new("/bare"));
    let param: Param = serde_json::from_str(r#"{"n":"obs"}"#).expect("stored form reads back");
    assert_eq!(param, Param::new("obs", None::<&str>));
}
