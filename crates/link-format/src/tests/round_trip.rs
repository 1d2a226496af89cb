//! parse(serialize(links)) == links: on the RFC examples and on randomly generated links.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{assert_round_trips, parse_ok, Link, Param};
use crate::serialize;

/// Documents from RFC 6690 §5, RFC 9176 §4.3/§6 and device stacks (aiocoap, RIOT, libcoap).
pub(super) const SAMPLES: &[&str] = &[
    "</sensors/temp>;if=\"sensor\",</sensors/light>;if=\"sensor\"",
    "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",</sensors/light>;rt=\"light-lux\";if=\"sensor\"",
    "</sensors>;ct=40;title=\"Sensor Index\",\n</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\n\
     </sensors/light>;rt=\"light-lux\";if=\"sensor\",\n\
     <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\"\n;rel=\"describedby\",\n\
     </t>;anchor=\"/sensors/temp\";rel=\"alternate\"",
    "</firmware/v2.1>;rt=\"firmware\";sz=262144",
    "</rd>;rt=core.rd;ct=\"40 65225\",</rd-lookup/res>;rt=core.rd-lookup-res;ct=40;obs,\
     </rd-lookup/ep>;rt=core.rd-lookup-ep",
    "</reg/1234>;base=\"coap://[2001:db8:3::127]:61616\";ep=node5;rt=core.rd-ep,\
     </reg/4521>;base=\"coap://[2001:db8:3::129]:61616\";ep=node7;d=floor-3;rt=core.rd-ep",
    "<coap://[2001:db8:3::123]:61616/temp>;rt=\"temperature\";anchor=\"coap://[2001:db8:3::123]:61616\"",
    "</sensors/temp>;rt=\"temperature\";if=\"sensor\";obs,</actuators/led>;rt=\"light\";if=\"actuator\"",
    "</.well-known/core>;ct=40,</riot/board>,</saul/dev>;rt=\"saul\";if=\"core.s\";obs",
    "</>;title=\"General Info\";ct=0,</time>;if=\"clock\";rt=\"ticks\";title=\"Internal Clock\";ct=0;obs",
    "</a>;title=\"x, y; z=\\\"q\\\" \\\\ ☃\";rt=\"a b\";et=x;et=y;rel=\"x y\";Title*=UTF-8'de'%c3%a4",
    "</a>;rt=\"\";a==b;x=<v>",
    "",
];

#[test]
fn samples_round_trip() {
    for sample in SAMPLES {
        assert_round_trips(&parse_ok(sample));
    }
}

#[test]
fn reserialized_samples_are_stable() {
    for sample in SAMPLES {
        let once = serialize(&parse_ok(sample));
        assert_eq!(serialize(&parse_ok(&once)), once, "{sample:?}");
    }
}

const TARGET_CHARS: &[char] = &[
    'a', 'z', 'A', '0', '9', '/', '.', ':', '[', ']', '?', '#', '&', '=', ';', ',', '"', '\'', '%',
    '-', '_', '~', '@', '!', '*', '+', '(', ')', '{', '}', '|', '\\', '^', '`', 'é', 'ü', '温',
    '🙂',
];
const NAME_CHARS: &[u8] = b"abcxyzABZ09!#$&+-.^_`|~";
const VALUE_CHARS: &[char] = &[
    'a', 'Z', '0', '9', ' ', '\t', ',', ';', '=', '"', '\\', '<', '>', '/', ':', '[', ']', '?',
    '@', '\'', '%', '*', '(', ')', '{', '}', '|', '~', '^', '`', '!', '#', '$', '&', '+', '-', '.',
    '_', 'é', 'ß', '温', '🙂', '\u{a0}', '\u{85}',
];
const KNOWN_NAMES: &[&str] = &[
    "rt", "if", "rel", "rev", "anchor", "title", "ct", "sz", "obs", "ep", "d", "base", "et",
];

fn random_string(rng: &mut StdRng, alphabet: &[char], max_len: usize) -> String {
    let len = rng.gen_range(0..=max_len);
    (0..len)
        .map(|_| *alphabet.choose(rng).expect("alphabet is not empty"))
        .collect()
}

fn random_name(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.5) {
        return (*KNOWN_NAMES.choose(rng).expect("names are not empty")).to_owned();
    }
    let len = rng.gen_range(1..=8);
    let mut name: String = (0..len)
        .map(|_| char::from(*NAME_CHARS.choose(rng).expect("alphabet is not empty")))
        .collect();
    if rng.gen_bool(0.1) {
        name.push('*');
    }
    // The parser stores names lower-cased, so only such names can round-trip.
    name.make_ascii_lowercase();
    name
}

fn random_link(rng: &mut StdRng) -> Link {
    let mut link = Link::new(random_string(rng, TARGET_CHARS, 24));
    for _ in 0..rng.gen_range(0..6) {
        let value = match rng.gen_range(0..4) {
            0 => None,
            1 => Some(random_string(rng, &VALUE_CHARS[..4], 6)),
            _ => Some(random_string(rng, VALUE_CHARS, 16)),
        };
        link.params.push(Param {
            name: random_name(rng).into(),
            value: value.map(Into::into),
        });
    }
    link
}

#[test]
fn random_links_round_trip() {
    let mut rng = StdRng::seed_from_u64(0x6690);
    for _ in 0..3_000 {
        let links: Vec<Link> = (0..rng.gen_range(0..5))
            .map(|_| random_link(&mut rng))
            .collect();
        assert_round_trips(&links);
    }
}

#[test]
fn random_links_round_trip_with_device_style_whitespace() {
    let mut rng = StdRng::seed_from_u64(9176);
    for _ in 0..500 {
        let links: Vec<Link> = (1..rng.gen_range(2..5))
            .map(|_| random_link(&mut rng))
            .collect();
        let mut text = String::from("\r\n");
        for (index, link) in links.iter().enumerate() {
            if index > 0 {
                text.push_str(",\n ");
            }
            text.push_str(&serialize(std::slice::from_ref(link)));
        }
        text.push('\n');
        assert_eq!(parse_ok(&text), links, "{text:?}");
    }
}
