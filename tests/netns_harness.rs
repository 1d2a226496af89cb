//! The namespace harness itself: a datagram and an IPv4 multicast datagram cross the veth
//! from one private namespace to the other, and nothing is bound on the host.

mod common;

use common::netns::{netns_or_skip, Side, A_V4, B_V4};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

#[test]
fn unicast_and_multicast_cross_the_veth() {
    let Some(pair) = netns_or_skip("harness") else {
        return;
    };
    let group = Ipv4Addr::new(224, 0, 1, 187);
    let receiver = pair
        .run_in(Side::A, move || {
            let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5683)).unwrap();
            s.join_multicast_v4(&group, &A_V4).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .expect("enter namespace a");
    let sender = pair
        .run_in(Side::B, || UdpSocket::bind((B_V4, 0)).unwrap())
        .expect("enter namespace b");
    let mut buf = [0u8; 64];

    sender.send_to(b"unicast", (A_V4, 5683)).unwrap();
    let (n, from) = receiver.recv_from(&mut buf).expect("unicast arrives");
    assert_eq!(&buf[..n], b"unicast");
    assert_eq!(from.ip(), std::net::IpAddr::V4(B_V4));

    sender.send_to(b"multicast", (group, 5683)).unwrap();
    let (n, _) = receiver.recv_from(&mut buf).expect("multicast arrives");
    assert_eq!(&buf[..n], b"multicast");

    // The host namespace has no 10.77.0.0/24: the pair really is separate.
    let host = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    assert!(
        host.send_to(b"x", (A_V4, 5683)).is_err() || {
            receiver
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            receiver.recv_from(&mut buf).is_err()
        }
    );
}
