//! Hostile traffic for the flood test and benchmark (abuse limits): a mix of garbage, CON
//! registrations, CON lookups and NON discovery requests from one source, so the RD's
//! per-source rate limit, handler bound and decoder all get exercised together.

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use rand::Rng;

/// One flood datagram: garbage, a CON registration, a CON lookup or a NON lookup.
pub fn flood_datagram(i: u64, rng: &mut impl Rng) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.message_id = i as u16;
    p.set_token((i as u32).to_be_bytes().to_vec());
    match i % 4 {
        0 => return (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect(),
        1 => {
            p.header.set_type(MessageType::Confirmable);
            p.header.code = MessageClass::Request(RequestType::Post);
            p.add_option(CoapOption::UriPath, b"rd".to_vec());
            p.add_option(CoapOption::ContentFormat, vec![40]);
            p.add_option(CoapOption::UriQuery, format!("ep=flood-{i}").into_bytes());
            p.payload = b"</junk>;rt=\"x\"".to_vec();
        }
        2 => {
            p.header.set_type(MessageType::Confirmable);
            p.header.code = MessageClass::Request(RequestType::Get);
            p.add_option(CoapOption::UriPath, b"rd-lookup".to_vec());
            p.add_option(CoapOption::UriPath, b"res".to_vec());
        }
        _ => {
            p.header.set_type(MessageType::NonConfirmable);
            p.header.code = MessageClass::Request(RequestType::Get);
            p.add_option(CoapOption::UriPath, b".well-known".to_vec());
            p.add_option(CoapOption::UriPath, b"core".to_vec());
        }
    }
    p.to_bytes().unwrap_or_default()
}
