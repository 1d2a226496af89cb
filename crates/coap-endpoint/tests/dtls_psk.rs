//! CoAP over DTLS with PSK against libcoap's clients (`coap-client-openssl`,
//! `coap-client-gnutls`, Debian's libcoap3-bin): the handshake, a request and its answer with
//! the identity the handler saw, a wrong key refused, and a spoofed hello answered only with a
//! HelloVerifyRequest no larger than itself and no session.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_endpoint::{
    Code, DtlsServerConfig, Endpoint, HandlerFuture, InboundRequest, NoHooks, OutboundResponse,
    PskStore, RequestHandler, TransmissionParams,
};
use futures::FutureExt;

struct Keys;

impl PskStore for Keys {
    fn psk(&self, identity: &[u8], out: &mut [u8]) -> Option<usize> {
        let key: &[u8] = match identity {
            b"node1" => b"secret-node1",
            b"node2" => b"secret-node2",
            _ => return None,
        };
        out.get_mut(..key.len())?.copy_from_slice(key);
        Some(key.len())
    }
}

/// Answers every request with who asked, and remembers it.
#[derive(Default)]
struct WhoAmI {
    seen: Mutex<Vec<Option<String>>>,
}

impl RequestHandler for WhoAmI {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        let who = req.identity.as_deref().map(str::to_string);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(who.clone());
        }
        let body = who.unwrap_or_else(|| "plain".into()).into_bytes();
        futures::future::ready(OutboundResponse::new(Code::CONTENT).with_payload(0, body)).boxed()
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn serve(handler: Arc<WhoAmI>) -> (Endpoint, SocketAddr, SocketAddr) {
    let config = DtlsServerConfig {
        psk: Some(Arc::new(Keys)),
        ..DtlsServerConfig::default()
    };
    let plain: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let secure: [SocketAddr; 1] = ["127.0.0.1:0".parse().unwrap()];
    let ep = Endpoint::bind_secure(
        &[plain],
        Some((&secure, &config)),
        TransmissionParams::default(),
        handler,
        Arc::new(NoHooks),
    )
    .await
    .unwrap();
    let plain = ep.local_addrs()[0];
    let secure = ep.secure_addrs()[0];
    (ep, plain, secure)
}

async fn coap_client(tool: &str, args: Vec<String>) -> (bool, String) {
    let tool = tool.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&tool)
            .args(&args)
            .output()
            .expect("run the libcoap client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn psk_get(addr: SocketAddr, identity: &str, key: &str) -> Vec<String> {
    ["-B", "10", "-u", identity, "-k", key, "-m", "get"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("coaps://{addr}/who")])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_clients_speak_psk_and_the_handler_sees_the_identity() {
    for tool in ["coap-client-openssl", "coap-client-gnutls"] {
        if !which(tool) {
            panic!("{tool} missing: install libcoap3-bin");
        }
        let handler = Arc::new(WhoAmI::default());
        let (ep, _plain, secure) = serve(Arc::clone(&handler)).await;
        let (ok, out) = coap_client(tool, psk_get(secure, "node1", "secret-node1")).await;
        assert!(ok, "{tool} failed");
        assert_eq!(out.trim(), "node1", "{tool}");
        let stats = ep.dtls_stats();
        assert_eq!(
            stats
                .handshakes_completed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // The request showed the client finished its handshake: the session left OpenSSL
        // for the endpoint's own record layer, which sealed the answer libcoap printed.
        assert_eq!(
            stats
                .sessions_compacted
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{tool}"
        );
        assert_eq!(
            handler.seen.lock().unwrap().as_slice(),
            &[Some("node1".to_string())]
        );

        // A wrong key: no handshake, the handler never runs.
        // (libcoap prints its own error on stdout, never an answer.)
        let (_, out) = coap_client(tool, psk_get(secure, "node2", "not-the-key")).await;
        assert!(!out.contains("node"), "{tool}: {out}");
        let (_, out) = coap_client(tool, psk_get(secure, "nobody", "whatever")).await;
        assert!(!out.contains("node"), "{tool}: {out}");
        assert_eq!(handler.seen.lock().unwrap().len(), 1, "{tool}");
        ep.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_hello_gets_a_small_hello_verify_request_and_no_session() {
    let handler = Arc::new(WhoAmI::default());
    let (ep, _plain, secure) = serve(handler).await;
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let hello = client_hello();
    probe.send_to(&hello, secure).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = probe.recv_from(&mut buf).expect("a HelloVerifyRequest");
    assert!(
        n <= hello.len(),
        "{n} bytes answer a {}-byte hello",
        hello.len()
    );
    assert_eq!(buf[0], 22, "a handshake record");
    assert_eq!(buf[13], 3, "HelloVerifyRequest");
    let stats = ep.dtls_stats();
    assert_eq!(
        stats
            .hello_verify_sent
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(stats.sessions.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        stats
            .handshakes_started
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A hello echoing a forged cookie: another HelloVerifyRequest, still no session.
    let forged = client_hello_with_cookie(&[0x55; 32]);
    probe.send_to(&forged, secure).unwrap();
    probe.recv_from(&mut buf).expect("a HelloVerifyRequest");
    assert_eq!(stats.sessions.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        stats
            .handshakes_started
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    ep.shutdown().await;
}

fn client_hello() -> Vec<u8> {
    client_hello_with_cookie(&[])
}

/// A DTLS 1.2 ClientHello offering TLS_PSK_WITH_AES_128_CCM_8, in one record.
fn client_hello_with_cookie(cookie: &[u8]) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.push(cookie.len() as u8);
    body.extend_from_slice(cookie);
    body.extend_from_slice(&[0, 2, 0xc0, 0xa8, 1, 0]);
    let ext = [0x00, 0x17, 0x00, 0x00]; // extended_master_secret
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let len = body.len();
    let mut hs = vec![
        1,
        0,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        0,
        0,
        0,
        (len >> 8) as u8,
        len as u8,
    ];
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// Picks a free UDP port pair (libcoap's server takes `port` for plain and `port + 1` for
/// DTLS).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_opens_sessions_as_a_client_to_libcoap_server() {
    if !which("coap-server-openssl") {
        panic!("coap-server-openssl missing: install libcoap3-bin");
    }
    let port = free_port_pair();
    let _server = Child(
        Command::new("coap-server-openssl")
            .args([
                "-A",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-k",
                "secret-node1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start coap-server-openssl"),
    );
    let device: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let handler = Arc::new(WhoAmI::default());
    let (ep, _plain, _secure) = serve(handler).await;
    let client = ep.client();
    let node1: Option<Arc<str>> = Some(Arc::from("node1"));
    // The server may need a moment to bind: the first handshake is retried a few times.
    let mut answer = None;
    for _ in 0..50 {
        let req = coap_endpoint::ClientRequest::get("/")
            .over_dtls(node1.clone())
            .timeout(Duration::from_secs(2));
        match client.request(device, req).await {
            Ok(r) => {
                answer = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let answer = answer.expect("GET over a session the endpoint opened");
    assert_eq!(answer.code, Code::CONTENT);
    let stats = ep.dtls_stats();
    let completed = stats
        .handshakes_completed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(completed >= 1);
    // As a client the session switches to the endpoint's own record layer at once: the
    // request was sealed by it and the answer (sealed by libcoap's OpenSSL) opened by it.
    assert!(
        stats
            .sessions_compacted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // The ping and an observation reuse that session: no new handshake.
    let rtt = client
        .ping_over(device, Some(node1.clone()), Duration::from_secs(5))
        .await;
    assert!(rtt.is_ok(), "{rtt:?}");
    let obs = client
        .observe(
            device,
            coap_endpoint::ClientRequest::get("/time")
                .over_dtls(node1.clone())
                .timeout(Duration::from_secs(5)),
        )
        .await
        .expect("observe /time over DTLS");
    assert_eq!(obs.first.code, Code::CONTENT);
    assert_eq!(
        stats
            .records_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every record libcoap sent opened"
    );
    assert_eq!(
        stats
            .handshakes_completed
            .load(std::sync::atomic::Ordering::Relaxed),
        completed
    );
    // A wrong identity for an established session is refused, not silently used.
    let other = client
        .request(
            device,
            coap_endpoint::ClientRequest::get("/")
                .over_dtls(Some(Arc::from("node2")))
                .timeout(Duration::from_secs(2)),
        )
        .await;
    assert!(other.is_err(), "{other:?}");
    ep.shutdown().await;
}

/// An endpoint with a plain and a DTLS socket on loopback, with `config`.
async fn bind_with(config: &DtlsServerConfig) -> Endpoint {
    let plain: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let secure: [SocketAddr; 1] = ["127.0.0.1:0".parse().unwrap()];
    Endpoint::bind_secure(
        &[plain],
        Some((&secure, config)),
        TransmissionParams::default(),
        Arc::new(WhoAmI::default()),
        Arc::new(NoHooks),
    )
    .await
    .unwrap()
}

/// GET / of `device` over DTLS as node1.
async fn get_as_node1(
    from: &Endpoint,
    device: SocketAddr,
    budget: Duration,
) -> Result<coap_endpoint::ClientResponse, coap_endpoint::ClientError> {
    let req = coap_endpoint::ClientRequest::get("/")
        .over_dtls(Some(Arc::from("node1")))
        .timeout(budget);
    from.client().request(device, req).await
}

/// A self-signed P-256 certificate with `cn` as subject CN, written as PEM files in `dir`:
/// (certificate, key).
fn self_signed(dir: &std::path::Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = cert.build();
    let (cert_path, key_path) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path)
}

/// A host that answers at a device's address with a self-made certificate naming the device
/// must not pass for it: the gateway's client offers certificate suites only when it has a CA
/// to verify them against, and then verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverifiable_certificate_never_passes_for_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "node1");
    // The impostor: certificates only, its own CN "node1" (it asks the client for a
    // certificate too, so that the control below has an identity on both ends).
    let impostor_config = DtlsServerConfig {
        certificates: Some(coap_endpoint::CertificateFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
            ca_file: Some(cert.clone()),
        }),
        ..DtlsServerConfig::default()
    };
    let impostor = bind_with(&impostor_config).await;
    let device = impostor.secure_addrs()[0];
    // The gateway with PSK only: no certificate suite is offered, so no handshake.
    let handler = Arc::new(WhoAmI::default());
    let (gateway, _, _) = serve(handler).await;
    let got = get_as_node1(&gateway, device, Duration::from_secs(3)).await;
    assert!(
        got.is_err(),
        "a PSK-only client accepted a certificate: {got:?}"
    );
    // With a CA that did not sign it, the certificate is verified and refused.
    let (other_ca, other_key) = self_signed(dir.path(), "some-ca");
    let verifying = DtlsServerConfig {
        psk: Some(Arc::new(Keys)),
        certificates: Some(coap_endpoint::CertificateFiles {
            cert_file: other_ca.clone(),
            key_file: other_key,
            ca_file: Some(other_ca),
        }),
        ..DtlsServerConfig::default()
    };
    let gateway2 = bind_with(&verifying).await;
    let got = get_as_node1(&gateway2, device, Duration::from_secs(3)).await;
    assert!(
        got.is_err(),
        "an unverified certificate was accepted: {got:?}"
    );
    // Control: trusting the impostor's own certificate as CA, the same handshake succeeds,
    // so the refusals above were the verification, not a broken setup.
    let trusting = DtlsServerConfig {
        psk: None,
        certificates: Some(coap_endpoint::CertificateFiles {
            cert_file: cert.clone(),
            key_file: key,
            ca_file: Some(cert),
        }),
        ..DtlsServerConfig::default()
    };
    let gateway3 = bind_with(&trusting).await;
    let got = get_as_node1(&gateway3, device, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("a verified certificate with the expected CN: {e}"));
    assert_eq!(got.code, Code::CONTENT);
    gateway.shutdown().await;
    gateway2.shutdown().await;
    gateway3.shutdown().await;
    impostor.shutdown().await;
}

/// The per-source handshake rate and `max_sessions`, from a source that is not exempt
/// (`exempt_loopback: false`, so loopback counts like a LAN host): a second handshake beyond
/// either bound gets no session, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_beyond_the_rate_or_the_session_table_get_no_session() {
    use std::sync::atomic::Ordering::Relaxed;
    for (what, config) in [
        (
            "handshake rate",
            DtlsServerConfig {
                psk: Some(Arc::new(Keys)),
                handshake_rate_per_s: 0.001,
                handshake_burst: 1.0,
                exempt_loopback: false,
                ..DtlsServerConfig::default()
            },
        ),
        (
            "max_sessions",
            DtlsServerConfig {
                psk: Some(Arc::new(Keys)),
                max_sessions: 1,
                handshake_rate_per_s: 0.0,
                exempt_loopback: false,
                ..DtlsServerConfig::default()
            },
        ),
    ] {
        let server = bind_with(&config).await;
        let addr = server.secure_addrs()[0];
        let (first, _, _) = serve(Arc::new(WhoAmI::default())).await;
        let (second, _, _) = serve(Arc::new(WhoAmI::default())).await;
        let ok = get_as_node1(&first, addr, Duration::from_secs(3)).await;
        assert!(ok.is_ok(), "{what}: the first handshake: {ok:?}");
        let refused = get_as_node1(&second, addr, Duration::from_secs(3)).await;
        assert!(refused.is_err(), "{what}: the second got through");
        let stats = server.dtls_stats();
        assert!(
            stats.hellos_refused.load(Relaxed) >= 1,
            "{what}: not counted"
        );
        assert_eq!(stats.sessions.load(Relaxed), 1, "{what}");
        first.shutdown().await;
        second.shutdown().await;
        server.shutdown().await;
    }
}
