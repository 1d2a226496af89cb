//! RFC 6690 §2 serializer (placeholder until it lands).

use super::Link;

pub fn serialize(links: &[Link]) -> String {
    let mut out = String::new();
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_link(&mut out, l);
    }
    out
}

pub fn write_link(out: &mut String, link: &Link) {
    out.push('<');
    out.push_str(&link.target);
    out.push('>');
}
