//! `platform-sim`: a stand-in for the cloud platform, for tests and for anyone trying the
//! gateway. A WebSocket server (actix-web + actix-ws) that accepts the gateway's link
//! on any path, checks its bearer token, prints every frame it receives as one JSON line on
//! stdout, and sends frames to the gateway from its stdin (one JSON line each) or from
//! `POST /command`. It speaks `docs/platform-protocol.md` v1 only as far as a human or a test
//! drives it, with one exception: protocol 1.1's acknowledged delivery, on by default
//! (`--no-ack` for a v1 platform): it answers `hello` with `welcome`, acknowledges what it
//! received, and reports gaps and duplicates by seq on stderr.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::Session;
use clap::Parser;
use futures::StreamExt;

const LONG_ABOUT: &str = "\
A platform simulator for coap-gateway's WebSocket link (protocol v1).

It listens for the gateway on --listen (any path; the gateway's platform.url points here, e.g.
ws://127.0.0.1:9000/), and prints, in this order on stdout:
  platform-sim listening on ws://ADDR      (first line, once bound; port 0 picks a free port)
  <one line per frame received>            (exactly the frame's JSON text, one frame a line)
Everything else (connections, refusals, errors) goes to stderr.

Sending to the gateway:
  stdin            every non-empty line is sent, as is, as one text frame to every connected
                   gateway (so malformed frames can be tested too), e.g.
                   {\"type\":\"command\",\"id\":\"c1\",\"ep\":\"node1\",\"method\":\"GET\",\"path\":\"/sensors/temp\"}
                   A line starting with `!binary ` sends the rest as a binary frame instead
                   (not part of the protocol: for testing how the gateway refuses it).
  POST /command    with --http-commands: the JSON body is sent the same way; answers
                   202 {\"sent_to\":N}, or 503 when no gateway is connected, 400 when the body is
                   not a JSON object. e.g.
                   curl -X POST http://ADDR/command -d '{\"type\":\"command\",...}'

With --token T, a gateway must send `Authorization: Bearer T` or is refused with HTTP 401.
With --tls-cert and --tls-key (PEM files), it serves wss:// instead of ws:// (and https:// for
POST /command); the first line then reads `platform-sim listening on wss://ADDR`.
SIGTERM or SIGINT closes every gateway session with 1001 Going Away and exits within ~2 s.

Protocol 1.1 (acknowledged delivery), on unless --no-ack: `hello` is answered with
{\"type\":\"welcome\",\"features\":[\"ack\"],\"last_seq\":N} (N: the last seq acknowledged, in any
session; absent before the first), and received frames are acknowledged with cumulative
{\"type\":\"ack\",\"seq\":N} every 20 ms or 512 frames. Every frame is still printed as received
(duplicates too); on stderr:
  platform-sim: gap: seq A..=B missing       (a seq jumped over, e.g. data the gateway dropped)
  platform-sim: seq jump: A..=B never used (a gateway restart; no event lost)
                                             (a gap up to a multiple of 65,536: the gateway
                                             continues at the next block after a restart)
  platform-sim: session S summary: frames F, numbered N, duplicates D, gaps G, highest H, acked A, jumps J
A gateway whose `hello` says \"seq_scheme\":\"etcd-revision\" (replicas on etcd) numbers frames by
etcd revision, with holes: they are not reported as gaps.
With --drop-after N, the first session is dropped (closed, nothing acknowledged) once N
numbered frames arrived: a platform that lost the connection before it processed them.
With --drop-at-type T, the first session is dropped when the first numbered frame of type T
arrives (e.g. command_result): the frames before it are acknowledged as usual, that one is
not, as by a platform that died while it handled it:
  platform-sim: session S: dropping the connection at a T frame (seq N), not acknowledged (--drop-at-type)";

#[derive(Parser, Debug)]
#[command(name = "platform-sim", version, about = "Platform simulator for the coap-gateway WebSocket link", long_about = LONG_ABOUT)]
struct Args {
    /// Address to listen on (port 0 picks a free port, printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Require this bearer token from the gateway (HTTP 401 otherwise).
    #[arg(long)]
    token: Option<String>,
    /// Also accept frames to send as `POST /command` with a JSON body.
    #[arg(long)]
    http_commands: bool,
    /// PEM certificate chain for serving wss:// (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for serving wss:// (needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Largest frame accepted from the gateway, in bytes; a larger one ends the session with
    /// close code 1009 "message too big", as a platform with this limit would.
    #[arg(long, default_value_t = 64 << 20)]
    max_frame: usize,
    /// Acknowledged delivery (protocol 1.1): answer hello with welcome, ack what arrives.
    /// The default; `--no-ack` makes a v1 platform.
    #[arg(long, overrides_with = "no_ack")]
    ack: bool,
    /// Behave as a protocol v1 platform: no welcome, no acks.
    #[arg(long)]
    no_ack: bool,
    /// Drop the first session, unacknowledged, after this many numbered frames.
    #[arg(long)]
    drop_after: Option<u64>,
    /// Drop the first session when the first numbered frame of this type arrives, without
    /// acknowledging it (the frames before it are acknowledged as usual).
    #[arg(long)]
    drop_at_type: Option<String>,
    /// Send `welcome` this many milliseconds after `hello`, after the Pong to the gateway's
    /// Ping, as a platform whose WebSocket library answers Pings before the application has
    /// answered `hello`.
    #[arg(long, default_value_t = 0)]
    welcome_delay_ms: u64,
}

/// Protocol 1.1 bookkeeping across sessions: what arrived by seq, what was acknowledged.
#[derive(Default)]
struct SeqBook {
    /// The highest seq received, in any session (for duplicates and gaps).
    highest: u64,
    /// The highest seq received and kept: a dropped session's frames are forgotten, as by a
    /// platform that lost them, so they are not acknowledged later.
    kept: u64,
    acked: u64,
    duplicates: u64,
    gaps: u64,
    /// Gaps that end at a seq block boundary: a gateway restart, not frames given up.
    jumps: u64,
    /// Sessions that dropped on purpose (`--drop-after`).
    dropped_sessions: u64,
    /// The gateway's `hello` said `"seq_scheme":"etcd-revision"` (replicas on etcd): its seqs
    /// are derived from revisions and have holes, which are not frames given up.
    holes_expected: bool,
}

/// What one numbered frame was, by its seq.
#[derive(Debug, PartialEq, Eq)]
enum SeqVerdict {
    New,
    Duplicate,
    /// New, after a jump: these seqs never came.
    Gap(u64, u64),
    /// New, at the start of a seq block after a gap: the rest of the block reserved before a
    /// gateway restart, never used (docs/platform-protocol.md, "Sequence numbers").
    RestartJump(u64, u64),
}

/// The gateway reserves seqs in blocks of this many and continues at the next multiple of it
/// after a restart.
const SEQ_BLOCK: u64 = 65_536;

impl SeqBook {
    fn note(&mut self, seq: u64) -> SeqVerdict {
        self.kept = self.kept.max(seq);
        if seq <= self.highest {
            self.duplicates += 1;
            return SeqVerdict::Duplicate;
        }
        let verdict = if self.highest > 0 && seq > self.highest + 1 && !self.holes_expected {
            if seq % SEQ_BLOCK == 0 {
                self.jumps += 1;
                SeqVerdict::RestartJump(self.highest + 1, seq - 1)
            } else {
                self.gaps += 1;
                SeqVerdict::Gap(self.highest + 1, seq - 1)
            }
        } else {
            SeqVerdict::New
        };
        self.highest = seq;
        self.kept = seq;
        verdict
    }
}

/// What the acknowledgement bookkeeping needs of a received frame: its `seq`, and whether it
/// is a `hello`.
#[derive(Debug, PartialEq, Eq)]
struct FrameHead {
    seq: Option<u64>,
    is_hello: bool,
}

impl FrameHead {
    /// The gateway writes every numbered frame as `{"seq":N,"type":"T",...}`
    /// (`outbox::codec`), so that head is read by a scan of its first bytes; parsing the whole
    /// frame into a `serde_json::Value` for two members cost more than the gateway's side of
    /// the link did (docs/benchmarks.md). Anything else (a `hello`, which has no seq, or a
    /// frame whose head does not read exactly so) is parsed in full, as before: a frame that is
    /// not JSON has no seq.
    fn read(text: &str) -> FrameHead {
        Self::scan(text).unwrap_or_else(|| Self::parse(text))
    }

    /// `{"seq":N,"type":"T"` followed by `,` or `}`, in a text that ends with `}`. `N`: decimal
    /// digits that fit a u64 (no sign, no leading zero but `0` itself); `T`: no escapes.
    fn scan(text: &str) -> Option<FrameHead> {
        if !text.ends_with('}') {
            return None;
        }
        let rest = text.strip_prefix("{\"seq\":")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, rest) = rest.split_at(digits);
        if number.is_empty() || (number.len() > 1 && number.starts_with('0')) {
            return None;
        }
        let seq: u64 = number.parse().ok()?;
        let rest = rest.strip_prefix(",\"type\":\"")?;
        let end = rest.find(['"', '\\'])?;
        let (frame_type, rest) = rest.split_at(end);
        let rest = rest.strip_prefix('"')?;
        if !(rest.starts_with(',') || rest.starts_with('}')) {
            return None;
        }
        Some(FrameHead {
            seq: Some(seq),
            is_hello: frame_type == "hello",
        })
    }

    fn parse(text: &str) -> FrameHead {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        FrameHead {
            seq: value["seq"].as_u64(),
            is_hello: value["type"] == "hello",
        }
    }
}

/// How often received frames are acknowledged (and at most how many between two acks).
const ACK_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
const ACK_BATCH: u64 = 512;

struct Shared {
    token: Option<String>,
    max_frame: usize,
    ack: bool,
    drop_after: Option<u64>,
    /// `--drop-at-type T`: T, and the `"type":"T"` to find in a frame.
    drop_at_type: Option<(String, String)>,
    welcome_delay: std::time::Duration,
    book: Mutex<SeqBook>,
    sessions: Mutex<Vec<(u64, Session)>>,
    next_session: AtomicU64,
}

impl Shared {
    fn sessions(&self) -> Vec<(u64, Session)> {
        self.sessions.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn forget(&self, id: u64) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|(sid, _)| *sid != id);
        }
    }

    /// Send `text` to every connected gateway (as a binary frame when `binary`); how many got
    /// it.
    async fn broadcast(&self, text: &str, binary: bool) -> usize {
        let mut sent = 0;
        for (id, mut session) in self.sessions() {
            let result = if binary {
                session
                    .binary(actix_web::web::Bytes::copy_from_slice(text.as_bytes()))
                    .await
            } else {
                session.text(text.to_owned()).await
            };
            if result.is_ok() {
                sent += 1;
            } else {
                self.forget(id);
            }
        }
        sent
    }

    /// Close every session with 1001 Going Away (RFC 6455 §7.4.1), so the gateway's link ends
    /// now instead of holding the server's graceful stop until its timeout.
    async fn close_all(&self) {
        let sessions = match self.sessions.lock() {
            Ok(mut sessions) => std::mem::take(&mut *sessions),
            Err(_) => return,
        };
        for (_, session) in sessions {
            let _ = session
                .close(Some(actix_ws::CloseReason {
                    code: actix_ws::CloseCode::Away,
                    description: Some("platform-sim stopping".into()),
                }))
                .await;
        }
    }
}

/// How long the stop waits for connections after their sessions were closed.
const STOP_GRACE_S: u64 = 1;

/// One received frame, one stdout line. JSON does not need raw line breaks (inside strings
/// they are invalid anyway), so a frame that has some is flattened rather than split.
fn print_frame(text: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = if text.contains(['\n', '\r']) {
        writeln!(out, "{}", text.replace(['\n', '\r'], " "))
    } else {
        writeln!(out, "{text}")
    };
    if result.and_then(|_| out.flush()).is_err() {
        // Whoever reads us went away: nothing useful left to do.
        std::process::exit(0);
    }
}

async fn gateway_socket(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let peer = req
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "?".into());
    if let Some(token) = &shared.token {
        let expected = format!("Bearer {token}");
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            eprintln!(
                "platform-sim: refused {peer}: {} bearer token (HTTP 401)",
                if given.is_some() { "wrong" } else { "no" }
            );
            return HttpResponse::Unauthorized().body("bad or missing bearer token\n");
        }
    }
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("platform-sim: {peer} is not a WebSocket upgrade: {e}");
            return HttpResponse::BadRequest().body("expected a WebSocket upgrade\n");
        }
    };
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut sessions) = shared.sessions.lock() {
        sessions.push((id, session.clone()));
    }
    eprintln!("platform-sim: gateway connected from {peer} (session {id})");
    let mut stream = stream
        .max_frame_size(shared.max_frame)
        .aggregate_continuations()
        .max_continuation_size(shared.max_frame);
    let shared = shared.into_inner();
    actix_web::rt::spawn(async move {
        let mut session = session;
        let mut close_reason = None;
        let mut frames = 0u64;
        let mut numbered = 0u64;
        let mut since_ack = 0u64;
        // `--drop-after` applies to the first session only.
        let dropping = shared.drop_after.filter(|_| {
            shared
                .book
                .lock()
                .map(|b| b.dropped_sessions == 0)
                .unwrap_or(false)
        });
        let drop_at = shared.drop_at_type.as_ref().filter(|_| {
            shared
                .book
                .lock()
                .map(|b| b.dropped_sessions == 0)
                .unwrap_or(false)
        });
        let mut tick = tokio::time::interval(ACK_EVERY);
        loop {
            let message = tokio::select! {
                m = stream.next() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = tick.tick() => {
                    if shared.ack && dropping.is_none() && !send_ack(&shared, &mut session).await {
                        break;
                    }
                    since_ack = 0;
                    continue;
                }
            };
            match message {
                Ok(actix_ws::AggregatedMessage::Text(text)) => {
                    print_frame(&text);
                    frames += 1;
                    if !shared.ack {
                        continue;
                    }
                    let head = FrameHead::read(&text);
                    if head.is_hello {
                        let scheme = serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v["seq_scheme"].as_str().map(str::to_owned));
                        if let Ok(mut book) = shared.book.lock() {
                            book.holes_expected = scheme.as_deref() == Some("etcd-revision");
                        }
                        let last = shared.book.lock().map(|b| b.acked).unwrap_or(0);
                        let mut welcome =
                            serde_json::json!({"type": "welcome", "features": ["ack"]});
                        if last > 0 {
                            welcome["last_seq"] = last.into();
                        }
                        if shared.welcome_delay.is_zero() {
                            if session.text(welcome.to_string()).await.is_err() {
                                break;
                            }
                        } else {
                            let mut later = session.clone();
                            let delay = shared.welcome_delay;
                            actix_web::rt::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = later.text(welcome.to_string()).await;
                            });
                        }
                    }
                    let Some(seq) = head.seq else {
                        continue;
                    };
                    numbered += 1;
                    since_ack += 1;
                    if let Some((kind, _)) = drop_at.filter(|(_, needle)| text.contains(needle)) {
                        eprintln!(
                            "platform-sim: session {id}: dropping the connection at a {kind} frame (seq {seq}), not acknowledged (--drop-at-type)"
                        );
                        if let Ok(mut book) = shared.book.lock() {
                            book.dropped_sessions += 1;
                        }
                        break;
                    }
                    if let Ok(mut book) = shared.book.lock() {
                        match book.note(seq) {
                            SeqVerdict::Gap(a, b) => {
                                eprintln!("platform-sim: gap: seq {a}..={b} missing");
                            }
                            SeqVerdict::RestartJump(a, b) => eprintln!(
                                "platform-sim: seq jump: {a}..={b} never used (a gateway restart; no event lost)"
                            ),
                            SeqVerdict::New | SeqVerdict::Duplicate => {}
                        }
                    }
                    if dropping.is_some_and(|n| numbered >= n) {
                        eprintln!(
                            "platform-sim: session {id}: dropping the connection after {numbered} numbered frames, none acknowledged (--drop-after)"
                        );
                        if let Ok(mut book) = shared.book.lock() {
                            book.dropped_sessions += 1;
                            book.kept = book.acked;
                        }
                        break;
                    }
                    if dropping.is_none()
                        && since_ack >= ACK_BATCH
                        && !send_ack(&shared, &mut session).await
                    {
                        break;
                    }
                    if since_ack >= ACK_BATCH {
                        since_ack = 0;
                    }
                }
                Ok(actix_ws::AggregatedMessage::Binary(bytes)) => {
                    eprintln!(
                        "platform-sim: session {id}: binary frame of {} bytes (not protocol v1)",
                        bytes.len()
                    );
                }
                Ok(actix_ws::AggregatedMessage::Ping(payload)) => {
                    if session.pong(&payload).await.is_err() {
                        break;
                    }
                }
                Ok(actix_ws::AggregatedMessage::Pong(_)) => {}
                Ok(actix_ws::AggregatedMessage::Close(reason)) => {
                    eprintln!("platform-sim: session {id}: gateway closed ({reason:?})");
                    break;
                }
                Err(actix_ws::ProtocolError::Overflow) => {
                    // What a platform with a frame limit does (RFC 6455 §7.4.1).
                    eprintln!(
                        "platform-sim: session {id}: frame over --max-frame ({} bytes); closing with 1009",
                        shared.max_frame
                    );
                    close_reason = Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Size,
                        description: Some("message too big".into()),
                    });
                    break;
                }
                Err(e) => {
                    eprintln!("platform-sim: session {id}: protocol error: {e}");
                    break;
                }
            }
        }
        shared.forget(id);
        let _ = session.close(close_reason).await;
        if shared.ack {
            if let Ok(book) = shared.book.lock() {
                eprintln!(
                    "platform-sim: session {id} summary: frames {frames}, numbered {numbered}, duplicates {}, gaps {}, highest {}, acked {}, jumps {}",
                    book.duplicates, book.gaps, book.highest, book.acked, book.jumps
                );
            }
        }
        eprintln!("platform-sim: session {id} ended");
    });
    response
}

/// Acknowledge everything up to the highest seq received, when that is news. False when the
/// session is gone.
async fn send_ack(shared: &Shared, session: &mut Session) -> bool {
    let seq = match shared.book.lock() {
        Ok(mut book) if book.kept > book.acked => {
            book.acked = book.kept;
            book.kept
        }
        _ => return true,
    };
    session
        .text(serde_json::json!({"type": "ack", "seq": seq}).to_string())
        .await
        .is_ok()
}

async fn post_command(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let is_object = serde_json::from_slice::<serde_json::Value>(&body)
        .map(|v| v.is_object())
        .unwrap_or(false);
    if !is_object {
        return HttpResponse::BadRequest().body("body must be one JSON object\n");
    }
    // Compact it: a frame is one JSON object; the body may have been pretty-printed.
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => v.to_string(),
        Err(_) => return HttpResponse::BadRequest().finish(),
    };
    let sent = shared.broadcast(&text, false).await;
    let body = serde_json::json!({ "sent_to": sent }).to_string();
    if sent == 0 {
        HttpResponse::ServiceUnavailable()
            .content_type("application/json")
            .body(body)
    } else {
        HttpResponse::Accepted()
            .content_type("application/json")
            .body(body)
    }
}

/// A rustls server config from PEM files.
fn server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid("--tls-cert", &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("--tls-key", &e))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("TLS certificate and key", &e))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let shared = web::Data::new(Shared {
        token: args.token.clone(),
        max_frame: args.max_frame,
        ack: !args.no_ack,
        drop_after: args.drop_after,
        drop_at_type: args.drop_at_type.map(|t| {
            let needle = format!("\"type\":{}", serde_json::json!(t));
            (t, needle)
        }),
        welcome_delay: std::time::Duration::from_millis(args.welcome_delay_ms),
        book: Mutex::new(SeqBook::default()),
        sessions: Mutex::new(Vec::new()),
        next_session: AtomicU64::new(0),
    });
    let app_shared = shared.clone();
    let http_commands = args.http_commands;
    let server = HttpServer::new(move || {
        let app = App::new().app_data(app_shared.clone());
        let app = if http_commands {
            app.route("/command", web::post().to(post_command))
        } else {
            app
        };
        app.default_service(web::to(gateway_socket))
    })
    .workers(1)
    // Signals are handled below: open WebSocket sessions must be closed first, or the graceful
    // stop waits for them until its timeout (30 s by default).
    .disable_signals()
    .shutdown_timeout(STOP_GRACE_S);
    let (server, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (
            server.bind_rustls_0_23(args.listen, server_tls(cert, key)?)?,
            "wss",
        ),
        _ => (server.bind(args.listen)?, "ws"),
    };
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("bound to no address"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "platform-sim listening on {scheme}://{addr}")?;
        out.flush()?;
    }

    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim().to_owned();
            if !line.is_empty() && lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let stdin_shared = shared.clone();
    actix_web::rt::spawn(async move {
        while let Some(line) = lines_rx.recv().await {
            let sent = match line.strip_prefix("!binary ") {
                Some(rest) => stdin_shared.broadcast(rest, true).await,
                None => stdin_shared.broadcast(&line, false).await,
            };
            if sent == 0 {
                eprintln!("platform-sim: no gateway connected; line not sent");
            }
        }
    });

    let server = server.run();
    let handle = server.handle();
    let signal_shared = shared.clone();
    actix_web::rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("platform-sim: cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("platform-sim: stopping");
        signal_shared.close_all().await;
        handle.stop(true).await;
    });
    server.await?;
    // The stdin reader thread may still be blocked in read(); do not wait for it.
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_are_judged_new_duplicate_or_after_a_gap() {
        let mut book = SeqBook::default();
        assert_eq!(book.note(1), SeqVerdict::New);
        assert_eq!(book.note(2), SeqVerdict::New);
        assert_eq!(book.note(2), SeqVerdict::Duplicate);
        assert_eq!(book.note(1), SeqVerdict::Duplicate);
        assert_eq!(book.note(6), SeqVerdict::Gap(3, 5));
        assert_eq!((book.duplicates, book.gaps, book.highest), (2, 1, 6));
        // A restart continues at the next block: told apart from frames given up.
        assert_eq!(book.note(65_536), SeqVerdict::RestartJump(7, 65_535));
        assert_eq!(book.note(65_540), SeqVerdict::Gap(65_537, 65_539));
        assert_eq!((book.gaps, book.jumps), (2, 1));
        let mut late_start = SeqBook::default();
        assert_eq!(
            late_start.note(70_000),
            SeqVerdict::New,
            "the first seq seen is no gap"
        );
        let mut cluster = SeqBook {
            holes_expected: true,
            ..SeqBook::default()
        };
        assert_eq!(cluster.note(7 << 20), SeqVerdict::New);
        assert_eq!(cluster.note((9 << 20) + 2), SeqVerdict::New, "a hole");
        assert_eq!(cluster.note(9 << 20), SeqVerdict::Duplicate);
        assert_eq!((cluster.gaps, cluster.duplicates), (0, 1));
    }

    #[test]
    fn a_frame_head_is_read_by_a_scan_and_anything_else_by_a_full_parse() {
        let head = |seq, is_hello| FrameHead { seq, is_hello };
        // The gateway's numbered frames: scanned.
        let data = r#"{"seq":7,"type":"data","ep":"n","payload":"x"}"#;
        assert_eq!(FrameHead::scan(data), Some(head(Some(7), false)));
        assert_eq!(
            FrameHead::scan(&format!(r#"{{"seq":{},"type":"x"}}"#, u64::MAX)),
            Some(head(Some(u64::MAX), false))
        );
        assert_eq!(
            FrameHead::scan(r#"{"seq":0,"type":"hello"}"#),
            Some(head(Some(0), true))
        );
        // Whatever does not read exactly so is left to the full parse, which agrees with the
        // scan wherever both apply and reads a seq that is not first.
        for text in [
            r#"{"type":"hello","features":["ack"]}"#,
            r#"{"type":"data","seq":9}"#,
            r#"{"seq":18446744073709551616,"type":"data"}"#,
            r#"{"seq":-1,"type":"data"}"#,
            r#"{"seq":007,"type":"data"}"#,
            r#"{"seq":7.5,"type":"data"}"#,
            r#"{"seq":7,"type":"da\u0074a"}"#,
            r#"{"seq":7,"type":"data""#,
            r#"{"seq":7,"type":"data"x}"#,
            r#"{ "seq":7,"type":"data"}"#,
            "{\"seq\":",
            "",
        ] {
            assert_eq!(FrameHead::scan(text), None, "{text}");
        }
        assert_eq!(
            FrameHead::read(r#"{"type":"hello","features":["ack"]}"#),
            head(None, true)
        );
        assert_eq!(
            FrameHead::read(r#"{"type":"data","seq":9}"#),
            head(Some(9), false)
        );
        assert_eq!(
            FrameHead::read(r#"{ "seq":7,"type":"data"}"#),
            head(Some(7), false)
        );
        // Malformed: no seq, not a hello, no panic.
        for text in [
            r#"{"seq":7,"type":"data""#,
            r#"{"seq":7,"type":"data"x}"#,
            r#"{"seq":-1,"type":"data"}"#,
            r#"{"seq":18446744073709551616,"type":"data"}"#,
            "not json",
            "",
        ] {
            assert_eq!(FrameHead::read(text), head(None, false), "{text}");
        }
    }
}
