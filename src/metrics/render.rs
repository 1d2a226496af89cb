//! `render`: every family of the gateway's metrics as one Prometheus text exposition
//! (version 0.0.4), from the recorded [`Metrics`] and the values read at scrape time
//! ([`ScrapeInputs`]). Names follow the Prometheus conventions: prefix `coap_gateway_`,
//! counters end in `_total`, durations are histograms in `_seconds`.
//!
//! Every labelled counter renders all of its label values (zeros included) so that series
//! exist from the first scrape, except the CoAP response codes: of the 256 possible codes,
//! the common ones are always shown and the others once they occurred.

use super::labels::{code_label, LabelSet};
use super::text::{Kind, TextWriter};
use super::{
    CommandResultKind, FrameType, LookupKind, Metrics, RegistrationOp, RegistrationOutcome,
    ResponseCode as Code, ScrapeInputs,
};

/// Response codes rendered even at zero: what the RD answers in normal operation.
const USUAL_CODES: &[Code] = &[
    Code::CREATED,
    Code::DELETED,
    Code::VALID,
    Code::CHANGED,
    Code::CONTENT,
    Code::BAD_REQUEST,
    Code::NOT_FOUND,
    Code::SERVICE_UNAVAILABLE,
];

/// Render every metric in the Prometheus text format (version 0.0.4).
pub fn render(metrics: &Metrics, inputs: &ScrapeInputs) -> String {
    let mut w = TextWriter::with_capacity(16 * 1024);
    let name = "coap_gateway_build_info";
    w.family(
        name,
        Kind::Gauge,
        "Always 1; the running gateway's version as a label.",
    );
    w.sample(name, &[("version", env!("CARGO_PKG_VERSION"))], 1);
    registry(&mut w, metrics, inputs);
    coap(&mut w, metrics);
    liveness_and_commands(&mut w, metrics);
    platform(&mut w, metrics, inputs);
    dtls(&mut w, inputs);
    w.finish()
}

fn registry(w: &mut TextWriter, m: &Metrics, inputs: &ScrapeInputs) {
    w.single(
        "coap_gateway_registrations",
        Kind::Gauge,
        "Live registrations in the resource directory.",
        inputs.registrations,
    );
    let name = "coap_gateway_devices";
    w.family(
        name,
        Kind::Gauge,
        "Registered devices by status (1 connected, 0 disconnected).",
    );
    w.sample(name, &[("status", "1")], inputs.devices_connected);
    w.sample(name, &[("status", "0")], inputs.devices_disconnected);

    let name = "coap_gateway_registration_operations_total";
    w.family(
        name,
        Kind::Counter,
        "Registration operations (register, update, remove, expire) by outcome.",
    );
    for op in RegistrationOp::ALL {
        for outcome in RegistrationOutcome::ALL {
            // An expiry cannot fail: only its one meaningful series is shown.
            if *op == RegistrationOp::Expire && *outcome != RegistrationOutcome::Ok {
                continue;
            }
            let value = m.registrations[op.index()][outcome.index()].get();
            w.sample(
                name,
                &[("operation", op.as_str()), ("outcome", outcome.as_str())],
                value,
            );
        }
    }

    let name = "coap_gateway_lookups_total";
    w.family(
        name,
        Kind::Counter,
        "Resource directory lookups answered, by lookup interface.",
    );
    for kind in LookupKind::ALL {
        w.sample(
            name,
            &[("kind", kind.as_str())],
            m.lookups[kind.index()].get(),
        );
    }
}

fn coap(w: &mut TextWriter, m: &Metrics) {
    let name = "coap_gateway_coap_responses_total";
    w.family(
        name,
        Kind::Counter,
        "CoAP requests answered by the RD endpoint, by response code (class.detail).",
    );
    for (code, counter) in m.responses.iter().enumerate() {
        let Ok(code) = u8::try_from(code) else {
            continue;
        };
        let value = counter.get();
        if value > 0 || USUAL_CODES.contains(&Code(code)) {
            w.sample(name, &[("code", &code_label(code))], value);
        }
    }
    w.histogram(
        "coap_gateway_rd_request_duration_seconds",
        "Time from a decoded request reaching the RD endpoint to its response being sent.",
        &m.request_duration.snapshot(),
    );
}

fn liveness_and_commands(w: &mut TextWriter, m: &Metrics) {
    w.single(
        "coap_gateway_pings_sent_total",
        Kind::Counter,
        "CoAP pings sent to devices by the Pinger (retries included).",
        m.pings_sent.get(),
    );
    w.single(
        "coap_gateway_pings_failed_total",
        Kind::Counter,
        "CoAP pings that got no answer in time or were refused by the network.",
        m.pings_failed.get(),
    );

    let name = "coap_gateway_commands_total";
    w.family(
        name,
        Kind::Counter,
        "Platform commands executed, by result (a device response, or the error kind).",
    );
    for kind in CommandResultKind::ALL {
        w.sample(
            name,
            &[("result", kind.as_str())],
            m.commands[kind.index()].get(),
        );
    }
    w.histogram(
        "coap_gateway_command_round_trip_seconds",
        "Round trip of a command's CoAP request to the device, for commands the device answered.",
        &m.command_round_trip.snapshot(),
    );
    w.single(
        "coap_gateway_commands_in_flight",
        Kind::Gauge,
        "Commands whose CoAP request is waiting for the device.",
        m.commands_in_flight.get(),
    );
}

fn platform(w: &mut TextWriter, m: &Metrics, inputs: &ScrapeInputs) {
    w.single(
        "coap_gateway_data_frames_forwarded_total",
        Kind::Counter,
        "Data frames (observed or polled values) handed by the Observer to the platform link.",
        m.data_forwarded.get(),
    );
    let name = "coap_gateway_data_frames_dropped_total";
    w.family(
        name,
        Kind::Counter,
        "Data frames dropped: over the device's rate (rate_limit), by the platform link's full \
         owed queue (queue_full), poll results refused by the Observer's full value queue \
         (mailbox_full), or, on replicas on etcd, frames not handed to the leader (not_relayed: \
         etcd unreachable for 3 s, not a member, or a frame over 1 MiB).",
    );
    w.sample(name, &[("reason", "rate_limit")], m.data_rate_limited.get());
    w.sample(
        name,
        &[("reason", "mailbox_full")],
        m.data_mailbox_full.get(),
    );
    w.sample(name, &[("reason", "not_relayed")], m.data_not_relayed.get());
    let queue_full = inputs.platform.as_ref().map_or(0, |p| p.dropped_data);
    w.sample(name, &[("reason", "queue_full")], queue_full);

    let name = "coap_gateway_observer_error_answers_total";
    w.family(
        name,
        Kind::Counter,
        "Error answers (4.xx, 5.xx) to the Observer's polls and observations, by code; each is \
         reported to the platform as data_error, never as data, and backs that resource off.",
    );
    for (code, counter) in m.observer_errors.iter().enumerate() {
        let Ok(code) = u8::try_from(code) else {
            continue;
        };
        // 4.04 is shown from the first scrape, so the series exists; others once seen.
        let value = counter.get();
        if value > 0 || Code(code) == Code::NOT_FOUND {
            w.sample(name, &[("code", &code_label(code))], value);
        }
    }

    w.single(
        "coap_gateway_registry_feed_overflows_total",
        Kind::Counter,
        "Times a registry event subscriber fell over its backlog and was resynced from the index.",
        m.registry_feed_overflows.get(),
    );
    w.single(
        "coap_gateway_command_results_dropped_total",
        Kind::Counter,
        "Command results the Executer could not hand to the platform link (retry queue full).",
        m.command_results_dropped.get(),
    );

    let name = "coap_gateway_platform_frames_sent_total";
    w.family(
        name,
        Kind::Counter,
        "Frames written to the platform WebSocket, by frame type.",
    );
    for ty in FrameType::ALL {
        w.sample(
            name,
            &[("type", ty.as_str())],
            m.frames_sent[ty.index()].get(),
        );
    }

    // The link's own state only exists when a platform is configured.
    let Some(link) = &inputs.platform else {
        return;
    };
    w.single(
        "coap_gateway_platform_connected",
        Kind::Gauge,
        "1 while the platform WebSocket is up.",
        u8::from(link.connected),
    );
    w.single(
        "coap_gateway_platform_dial_attempts_total",
        Kind::Counter,
        "Platform WebSocket dials started.",
        link.dial_attempts,
    );
    w.single(
        "coap_gateway_platform_reconnects_total",
        Kind::Counter,
        "Platform connections opened after the first one.",
        link.reconnects,
    );
    w.single(
        "coap_gateway_platform_auth_failures_total",
        Kind::Counter,
        "Platform dials refused with HTTP 401/403 (bad token).",
        link.auth_failures,
    );
    w.single(
        "coap_gateway_platform_queued_frames",
        Kind::Gauge,
        "Frames owed to the platform, waiting in the bounded queue (link down or backed up).",
        link.queued,
    );
    w.single(
        "coap_gateway_platform_writer_frames",
        Kind::Gauge,
        "Frames handed to the WebSocket writer and not yet taken by it.",
        link.in_flight,
    );
    w.single(
        "coap_gateway_platform_dropped_events_total",
        Kind::Counter,
        "Registry events and command results dropped because the queue was full of them.",
        link.dropped_events,
    );
    // Protocol 1.1, acknowledged delivery (issue 21).
    w.single(
        "coap_gateway_platform_acked_mode",
        Kind::Gauge,
        "1 while the platform connection uses acknowledged delivery (protocol 1.1).",
        u8::from(link.acked_mode),
    );
    w.single(
        "coap_gateway_platform_last_ack_seq",
        Kind::Gauge,
        "The platform's latest cumulative acknowledgement (a frame seq).",
        link.last_ack,
    );
    w.single(
        "coap_gateway_platform_outbox_frames",
        Kind::Gauge,
        "Frames in the outbox: not yet written, or written and not yet acknowledged.",
        link.outbox_frames,
    );
    w.single(
        "coap_gateway_platform_outbox_bytes",
        Kind::Gauge,
        "Bytes of frame text in the outbox (bounded by platform.outbox_max_bytes).",
        link.outbox_bytes,
    );
    w.single(
        "coap_gateway_platform_oldest_unacked_seconds",
        Kind::Gauge,
        "Age of the oldest frame still owed to the platform (0 when none).",
        Seconds(link.oldest_unacked_ms),
    );
    w.single(
        "coap_gateway_platform_resent_frames_total",
        Kind::Counter,
        "Frames written again after a reconnect because the platform had not acknowledged them.",
        link.resent,
    );
    w.single(
        "coap_gateway_platform_outbox_overflows_total",
        Kind::Counter,
        "Times the outbox was full of events and the oldest were replaced by a snapshot-forcing marker.",
        link.overflows,
    );
}

/// Milliseconds rendered as seconds, exactly (no float rounding of the integer part).
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1_000, self.0 % 1_000)
    }
}

/// The coaps listener's counters; nothing without one (`dtls.listen` empty).
fn dtls(w: &mut TextWriter, inputs: &ScrapeInputs) {
    let Some(d) = &inputs.dtls else {
        return;
    };
    w.single(
        "coap_gateway_dtls_hello_verify_requests_sent_total",
        Kind::Counter,
        "HelloVerifyRequests sent to ClientHellos without a valid cookie (no state kept).",
        d.hello_verify_sent,
    );
    w.single(
        "coap_gateway_dtls_handshakes_started_total",
        Kind::Counter,
        "DTLS handshakes begun: a ClientHello with a valid cookie was given a session.",
        d.handshakes_started,
    );
    let name = "coap_gateway_dtls_handshakes_total";
    w.family(
        name,
        Kind::Counter,
        "DTLS handshakes that ended, by outcome: completed, failed (bad key, unknown identity, \
         untrusted certificate, fatal alert) or timed_out (dtls.handshake_timeout_s).",
    );
    w.sample(name, &[("outcome", "completed")], d.handshakes_completed);
    w.sample(name, &[("outcome", "failed")], d.handshakes_failed);
    w.sample(name, &[("outcome", "timed_out")], d.handshakes_timed_out);
    w.single(
        "coap_gateway_dtls_hellos_refused_total",
        Kind::Counter,
        "ClientHellos with a valid cookie dropped: session table full (dtls.max_sessions) or the \
         source over its handshake rate.",
        d.hellos_refused,
    );
    w.single(
        "coap_gateway_dtls_datagrams_dropped_total",
        Kind::Counter,
        "Datagrams on the coaps sockets that were neither a record of a known session nor a \
         ClientHello, or whose HelloVerifyRequest would have been larger than the hello.",
        d.datagrams_dropped,
    );
    w.single(
        "coap_gateway_dtls_sessions_compacted_total",
        Kind::Counter,
        "DTLS sessions moved from OpenSSL to the gateway's own record layer once the peer \
         finished its handshake (memory per idle session).",
        d.sessions_compacted,
    );
    w.single(
        "coap_gateway_dtls_records_dropped_total",
        Kind::Counter,
        "Records of established DTLS sessions dropped: forged (failed authentication), \
         replayed, or of another epoch.",
        d.records_dropped,
    );
    w.single(
        "coap_gateway_dtls_sessions",
        Kind::Gauge,
        "DTLS sessions held, established or in handshake.",
        d.sessions,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use prometheus_parse::{Scrape, Value};

    use super::*;
    use crate::metrics::{DtlsSample, PlatformLinkSample as LinkStats};

    fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Scrape::parse(lines).expect("exposition parses")
    }

    /// Strict structure checks the lenient parser does not make: every line is a HELP, TYPE
    /// or sample line; each family has HELP then TYPE once, before its samples; samples
    /// belong to the family just declared; no series is repeated.
    fn check_structure(text: &str) -> BTreeMap<String, String> {
        let mut types = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut series = BTreeSet::new();
        let mut pending_help: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(name.starts_with("coap_gateway_"), "{line}");
                assert!(rest.len() > name.len() + 1, "empty help: {line}");
                pending_help = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap();
                assert_eq!(
                    pending_help.take().as_deref(),
                    Some(name),
                    "HELP before TYPE"
                );
                assert!(
                    types.insert(name.to_string(), ty.to_string()).is_none(),
                    "{name} twice"
                );
                match ty {
                    "counter" => assert!(name.ends_with("_total"), "{name}"),
                    "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                    "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                    other => panic!("unexpected type {other}"),
                }
                current = Some((name.to_string(), ty.to_string()));
            } else {
                let (family, ty) = current.as_ref().expect("sample before any TYPE");
                let (series_key, value) = line.rsplit_once(' ').expect("sample has a value");
                let sample_name = series_key.split('{').next().unwrap();
                let belongs = if ty == "histogram" {
                    [
                        format!("{family}_bucket"),
                        format!("{family}_sum"),
                        format!("{family}_count"),
                    ]
                    .contains(&sample_name.to_string())
                } else {
                    sample_name == family
                };
                assert!(belongs, "{sample_name} outside its family {family}");
                let v: f64 = value.parse().expect("numeric value");
                assert!(v >= 0.0 && v.is_finite(), "{line}");
                assert!(
                    series.insert(series_key.to_string()),
                    "repeated {series_key}"
                );
            }
        }
        types
    }

    fn value_of(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => panic!("{name} is not a scalar"),
        }
    }

    /// Every scalar and histogram bucket by series, for comparing two scrapes.
    fn by_series(scrape: &Scrape) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in &scrape.samples {
            let key = format!("{}{}", s.metric, s.labels);
            match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    out.insert(key, *v);
                }
                Value::Histogram(buckets) => {
                    for b in buckets {
                        out.insert(format!("{key}le={}", b.less_than), b.count);
                    }
                }
                Value::Summary(_) => panic!("no summaries here"),
            }
        }
        out
    }

    fn some_traffic(m: &Metrics) {
        m.record_response(Code::CONTENT, Duration::from_micros(30));
        m.record_response(Code::CONTENT, Duration::from_millis(3));
        m.record_response(Code(0x9f), Duration::from_secs(20)); // 4.31: unusual, +Inf
        m.record_lookup(LookupKind::Endpoint);
        m.record_lookup(LookupKind::Resource);
        m.record_lookup(LookupKind::Resource);
        m.record_registration(RegistrationOp::Register, Code::CREATED);
        m.record_registration(RegistrationOp::Update, Code::NOT_FOUND);
        m.record_registration(RegistrationOp::Register, Code::BAD_REQUEST);
        m.record_expired(3);
        m.record_ping(true);
        m.record_ping(false);
        m.record_command(CommandResultKind::Response, Some(12));
        m.record_command(CommandResultKind::Timeout, None);
        m.command_in_flight(true);
        m.record_data_forwarded();
        m.record_data_rate_limited();
        m.record_observer_error(Code::SERVICE_UNAVAILABLE);
        m.record_frame_sent(FrameType::Error);
    }

    fn link() -> LinkStats {
        LinkStats {
            connected: true,
            dial_attempts: 4,
            reconnects: 2,
            queued: 7,
            in_flight: 1,
            dropped_data: 5,
            acked_mode: true,
            last_ack: 41,
            outbox_frames: 3,
            outbox_bytes: 300,
            oldest_unacked_ms: 1_250,
            resent: 1_000,
            overflows: 2,
            ..LinkStats::default()
        }
    }

    fn dtls() -> DtlsSample {
        DtlsSample {
            hello_verify_sent: 9,
            handshakes_started: 8,
            handshakes_completed: 5,
            handshakes_failed: 2,
            handshakes_timed_out: 1,
            hellos_refused: 3,
            datagrams_dropped: 4,
            sessions: 6,
            sessions_compacted: 7,
            records_dropped: 8,
        }
    }

    #[test]
    fn every_family_parses_with_the_recorded_values() {
        let m = Metrics::new();
        some_traffic(&m);
        let inputs = ScrapeInputs {
            registrations: 10,
            devices_connected: 8,
            devices_disconnected: 2,
            platform: Some(link()),
            dtls: Some(dtls()),
        };
        let text = render(&m, &inputs);
        let types = check_structure(&text);
        let scrape = parse(&text);
        // Every declared family has samples, and the parser saw every sample line.
        let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
        let parsed: usize = scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(parsed, sample_lines, "the parser skipped a line:\n{text}");
        for name in types.keys() {
            assert!(
                scrape.samples.iter().any(|s| &s.metric == name),
                "{name} has no samples"
            );
            assert!(scrape.docs.contains_key(name));
        }

        let errors = "coap_gateway_observer_error_answers_total";
        assert_eq!(value_of(&scrape, errors, &[("code", "5.03")]), 1.0);
        assert_eq!(value_of(&scrape, errors, &[("code", "4.04")]), 0.0);

        let reg = "coap_gateway_registration_operations_total";
        assert_eq!(
            value_of(
                &scrape,
                reg,
                &[("operation", "register"), ("outcome", "ok")]
            ),
            1.0
        );
        assert_eq!(
            value_of(
                &scrape,
                reg,
                &[("operation", "register"), ("outcome", "rejected")]
            ),
            1.0
        );
        assert_eq!(
            value_of(
                &scrape,
                reg,
                &[("operation", "update"), ("outcome", "not_found")]
            ),
            1.0
        );
        assert_eq!(
            value_of(&scrape, reg, &[("operation", "expire"), ("outcome", "ok")]),
            3.0
        );
        assert_eq!(
            value_of(&scrape, reg, &[("operation", "remove"), ("outcome", "ok")]),
            0.0
        );
        assert_eq!(
            value_of(&scrape, "coap_gateway_lookups_total", &[("kind", "res")]),
            2.0
        );
        assert_eq!(
            value_of(&scrape, "coap_gateway_lookups_total", &[("kind", "gp")]),
            0.0
        );
        let codes = "coap_gateway_coap_responses_total";
        assert_eq!(value_of(&scrape, codes, &[("code", "2.05")]), 2.0);
        assert_eq!(value_of(&scrape, codes, &[("code", "4.31")]), 1.0);
        assert_eq!(value_of(&scrape, codes, &[("code", "4.04")]), 0.0);
        assert!(
            !text.contains("code=\"4.13\""),
            "unused unusual codes stay hidden"
        );
        assert_eq!(
            value_of(&scrape, "coap_gateway_devices", &[("status", "0")]),
            2.0
        );
        assert_eq!(value_of(&scrape, "coap_gateway_registrations", &[]), 10.0);
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        assert_eq!(value_of(&scrape, "coap_gateway_build_info", &version), 1.0);
        assert_eq!(value_of(&scrape, "coap_gateway_pings_sent_total", &[]), 2.0);
        assert_eq!(
            value_of(&scrape, "coap_gateway_pings_failed_total", &[]),
            1.0
        );
        let cmds = "coap_gateway_commands_total";
        assert_eq!(value_of(&scrape, cmds, &[("result", "response")]), 1.0);
        assert_eq!(value_of(&scrape, cmds, &[("result", "timeout")]), 1.0);
        assert_eq!(
            value_of(&scrape, "coap_gateway_commands_in_flight", &[]),
            1.0
        );
        let dropped = "coap_gateway_data_frames_dropped_total";
        assert_eq!(value_of(&scrape, dropped, &[("reason", "queue_full")]), 5.0);
        assert_eq!(value_of(&scrape, dropped, &[("reason", "rate_limit")]), 1.0);
        let sent = "coap_gateway_platform_frames_sent_total";
        assert_eq!(value_of(&scrape, sent, &[("type", "error")]), 1.0);
        assert_eq!(
            value_of(&scrape, "coap_gateway_platform_connected", &[]),
            1.0
        );
        assert_eq!(
            value_of(&scrape, "coap_gateway_platform_reconnects_total", &[]),
            2.0
        );
        assert_eq!(
            value_of(&scrape, "coap_gateway_platform_queued_frames", &[]),
            7.0
        );
        let link = |name: &str| value_of(&scrape, name, &[]);
        assert_eq!(link("coap_gateway_platform_acked_mode"), 1.0);
        assert_eq!(link("coap_gateway_platform_last_ack_seq"), 41.0);
        assert_eq!(link("coap_gateway_platform_outbox_frames"), 3.0);
        assert_eq!(link("coap_gateway_platform_outbox_bytes"), 300.0);
        assert_eq!(link("coap_gateway_platform_oldest_unacked_seconds"), 1.25);
        assert_eq!(link("coap_gateway_platform_resent_frames_total"), 1_000.0);
        assert_eq!(link("coap_gateway_platform_outbox_overflows_total"), 2.0);
        let dtls = |name: &str, labels: &[(&str, &str)]| value_of(&scrape, name, labels);
        let handshakes = "coap_gateway_dtls_handshakes_total";
        assert_eq!(
            dtls("coap_gateway_dtls_hello_verify_requests_sent_total", &[]),
            9.0
        );
        assert_eq!(dtls("coap_gateway_dtls_handshakes_started_total", &[]), 8.0);
        assert_eq!(dtls(handshakes, &[("outcome", "completed")]), 5.0);
        assert_eq!(dtls(handshakes, &[("outcome", "failed")]), 2.0);
        assert_eq!(dtls(handshakes, &[("outcome", "timed_out")]), 1.0);
        assert_eq!(dtls("coap_gateway_dtls_hellos_refused_total", &[]), 3.0);
        assert_eq!(dtls("coap_gateway_dtls_datagrams_dropped_total", &[]), 4.0);
        assert_eq!(dtls("coap_gateway_dtls_sessions", &[]), 6.0);
        assert_eq!(dtls("coap_gateway_dtls_sessions_compacted_total", &[]), 7.0);
        assert_eq!(dtls("coap_gateway_dtls_records_dropped_total", &[]), 8.0);

        let latency = scrape
            .samples
            .iter()
            .find(|s| s.metric == "coap_gateway_rd_request_duration_seconds")
            .expect("histogram");
        let Value::Histogram(buckets) = &latency.value else {
            panic!("not a histogram")
        };
        let le = |bound: f64| buckets.iter().find(|b| b.less_than == bound).unwrap().count;
        assert_eq!(le(0.00005), 1.0, "30 µs is in the first bucket");
        assert_eq!(le(0.0025), 1.0);
        assert_eq!(le(0.005), 2.0, "3 ms joins at 5 ms");
        assert_eq!(le(10.0), 2.0);
        assert_eq!(le(f64::INFINITY), 3.0, "20 s only in +Inf");
        assert_eq!(
            value_of(
                &scrape,
                "coap_gateway_rd_request_duration_seconds_count",
                &[]
            ),
            3.0
        );
        let sum = value_of(&scrape, "coap_gateway_rd_request_duration_seconds_sum", &[]);
        assert!((sum - 20.00303).abs() < 1e-9, "{sum}");
        let rtt = value_of(&scrape, "coap_gateway_command_round_trip_seconds_sum", &[]);
        assert!((rtt - 0.012).abs() < 1e-12, "{rtt}");
    }

    #[test]
    fn dtls_families_only_with_a_coaps_listener() {
        let m = Metrics::new();
        let without = render(&m, &ScrapeInputs::default());
        assert!(!without.contains("coap_gateway_dtls_"), "{without}");
        let with = render(
            &m,
            &ScrapeInputs {
                dtls: Some(DtlsSample::default()),
                ..ScrapeInputs::default()
            },
        );
        check_structure(&with);
        let scrape = parse(&with);
        assert_eq!(value_of(&scrape, "coap_gateway_dtls_sessions", &[]), 0.0);
    }

    #[test]
    fn counters_never_decrease_between_scrapes() {
        let m = Metrics::new();
        let inputs = ScrapeInputs {
            platform: Some(link()),
            ..ScrapeInputs::default()
        };
        let first = parse(&render(&m, &inputs));
        let types_first = check_structure(&render(&m, &inputs));
        some_traffic(&m);
        some_traffic(&m);
        let text = render(&m, &inputs);
        let types = check_structure(&text);
        assert_eq!(types, types_first, "the same families every scrape");
        let (before, after) = (by_series(&first), by_series(&parse(&text)));
        let mut moved = 0;
        for (series, old) in &before {
            let family_type = types
                .iter()
                .find(|(name, _)| series.starts_with(name.as_str()))
                .map(|(_, t)| t.as_str());
            let new = after
                .get(series)
                .unwrap_or_else(|| panic!("{series} vanished"));
            if family_type != Some("gauge") {
                assert!(new >= old, "{series} went from {old} to {new}");
                moved += usize::from(new > old);
            }
        }
        assert!(moved >= 15, "only {moved} series moved");
    }

    #[test]
    fn without_a_platform_the_link_families_are_absent() {
        let text = render(&Metrics::new(), &ScrapeInputs::default());
        check_structure(&text);
        assert!(!text.contains("coap_gateway_platform_connected"));
        assert!(text.contains("coap_gateway_data_frames_dropped_total{reason=\"queue_full\"} 0"));
    }
}
