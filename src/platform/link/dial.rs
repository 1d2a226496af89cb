//! Connecting the PlatformLink: the awc client and its TLS roots, one dial and its failure
//! (classified into a [`LinkError`] and logged without credentials), and what follows a
//! connect: the writer task, the reader stream, then `hello`, the snapshot parts and the
//! Ping whose Pong proves the platform read them.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use awc::error::SendRequestError;
use awc::error::WsClientError;
use awc::ws::Message as WsMessage;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use super::connection::{Connection, LinkState, Phase};
use super::inbound::{Inbound, WriterFailed};
use super::{PlatformLink, OVERSIZE_LOG};
use crate::platform::error::LinkError;
use crate::platform::fit::snapshot_parts;
use crate::platform::outbox::Class;
use crate::platform::protocol::{hello, FEATURE_ACK};
use crate::time::now_ms;

/// The Ping sent right behind the snapshot: its Pong proves the platform read every part.
const SNAPSHOT_PROBE: &[u8] = b"snapshot";
/// The Ping sent right behind `hello`: a platform of protocol 1.1 answers `hello` with
/// `welcome` before this Ping's Pong; a v1 platform never does, so the Pong means v1.
pub(super) const HELLO_PROBE: &[u8] = b"hello";
/// How long a finished writer keeps the socket open after its last frame (normally our
/// Close), so the platform reads everything and closes first.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// How long after that Pong a `welcome` is still awaited before the connection is taken for
/// v1 (a v1 platform's snapshot waits this long once per connection).
pub(super) const WELCOME_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// Largest frame accepted from the platform. Commands are small; this only bounds memory.
const MAX_INBOUND_FRAME: usize = 1 << 20;

/// `url` without user-info or query, for logs.
fn loggable_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

fn classify(error: WsClientError) -> LinkError {
    match error {
        WsClientError::InvalidResponseStatus(status)
            if status.as_u16() == 401 || status.as_u16() == 403 =>
        {
            LinkError::Unauthorized {
                status: status.as_u16(),
            }
        }
        WsClientError::InvalidResponseStatus(status) => LinkError::UpgradeRefused {
            status: status.as_u16(),
        },
        WsClientError::SendRequest(SendRequestError::Url(e)) => {
            LinkError::InvalidUrl(e.to_string())
        }
        WsClientError::SendRequest(SendRequestError::Http(e)) => {
            LinkError::InvalidUrl(e.to_string())
        }
        other => LinkError::Transport(other.to_string()),
    }
}

impl PlatformLink {
    /// TLS for `wss://`: the public web roots plus `extra_root_certs`, ALPN `http/1.1` only
    /// (WebSocket upgrades are HTTP/1.1; offering h2 could break them).
    fn tls_config(&self) -> rustls::ClientConfig {
        let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
        for cert in &self.settings.extra_root_certs {
            if let Err(e) = roots.add(cert.clone()) {
                log::error!("platform link: an extra root certificate is unusable: {e}");
            }
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    fn build_client(&self) -> awc::Client {
        // Without a process-wide provider rustls cannot build a TLS config; installing fails
        // harmlessly when some other part of the process installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::new(self.tls_config()))
            .timeout(self.settings.connect_timeout);
        awc::Client::builder()
            .connector(connector)
            .timeout(self.settings.connect_timeout)
            .finish()
    }

    pub(super) fn dial(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        self.state = LinkState::Dialling;
        self.stats.dial_attempts += 1;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = self.build_client();
                self.client = Some(client.clone());
                client
            }
        };
        let mut request = client
            .ws(self.settings.url.as_str())
            .max_frame_size(MAX_INBOUND_FRAME);
        if !self.settings.token.is_empty() {
            request = request.bearer_auth(self.settings.token.expose());
        }
        log::debug!(
            "platform link: dialling {} (attempt {})",
            loggable_url(&self.settings.url),
            self.backoff.attempts() + 1
        );
        ctx.spawn(async move { request.connect().await }.into_actor(self).map(
            move |result, link, ctx| match result {
                Ok((_response, framed)) => link.on_connected(generation, framed, ctx),
                Err(e) => link.on_dial_failed(generation, classify(e), ctx),
            },
        ));
    }

    fn on_dial_failed(&mut self, generation: u64, error: LinkError, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
            return;
        }
        if generation != self.generation {
            return;
        }
        self.state = LinkState::Down;
        let delay = self.backoff.next_delay(&mut self.rng);
        let url = loggable_url(&self.settings.url);
        match &error {
            LinkError::Unauthorized { .. } => {
                self.stats.auth_failures += 1;
                log::error!(
                    "platform link: {error} at {url}; check platform.token (token {}); retrying in {:.1} s",
                    if self.settings.token.is_empty() { "not set" } else { "set, not shown" },
                    delay.as_secs_f64()
                );
            }
            e if e.is_configuration_problem() => log::error!(
                "platform link: {error} ({url}); retrying in {:.1} s",
                delay.as_secs_f64()
            ),
            _ => log::warn!(
                "platform link: {error} ({url}); retrying in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        ctx.run_later(delay, |link, ctx| link.dial(ctx));
    }

    fn on_connected(
        &mut self,
        generation: u64,
        framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.generation || self.closing {
            return;
        }
        let (sink, stream) = framed.split();
        let (tx, rx) = mpsc::unbounded::<WsMessage>();
        let in_flight = Rc::new(Cell::new(0usize));
        let taken = in_flight.clone();
        // The writer is its own task, not the actor's: when the connection (or the whole
        // actor) is dropped, `tx` closes and the writer still flushes what it holds, a final
        // Close frame included. It then lingers before closing TCP: RFC 6455 §7.1.1 has the
        // server close first, and a platform that sees our FIN right behind the last frames
        // may drop frames it has not parsed yet (actix-web's did, a `hello` among them).
        let link = ctx.address();
        actix_rt::spawn(async move {
            let mut sink = sink;
            let mut messages = rx.map(move |message| {
                taken.set(taken.get().saturating_sub(1));
                Ok(message)
            });
            let mut written = sink.send_all(&mut messages).await;
            if written.is_ok() {
                actix_rt::time::sleep(CLOSE_LINGER).await;
                written = sink.close().await;
            }
            if let Err(e) = written {
                link.do_send(WriterFailed {
                    generation,
                    error: e.to_string(),
                });
            }
        });
        let reader = ctx.add_stream(
            stream
                .map(move |item| Inbound::Frame(generation, item))
                .chain(futures::stream::once(
                    async move { Inbound::Closed(generation) },
                )),
        );
        self.state = LinkState::Up(Connection {
            generation,
            tx,
            in_flight,
            reader,
            last_heard: Instant::now(),
            snapshot_accepted: false,
            largest_frame: 0,
            phase: Phase::Negotiating,
            snapshot_last_seq: None,
        });
        self.stats.connects += 1;
        self.stats.reconnects = self.stats.connects.saturating_sub(1);

        // The registry is read now (hello counts it) and cut into parts once the platform's
        // answer to hello has decided the mode of this connection (see `on_ready`): version 1
        // sends what was read here, acked mode and a cluster's leader read it again there.
        // Cutting is the costly part (about 350 ms at 100,000 devices), so it is done once.
        let devices = self.snapshot.snapshot();
        let count = devices.len();
        let replica = match &self.settings.numbering {
            super::Numbering::Revision { replica } => Some(replica.as_str()),
            super::Numbering::Local => {
                self.pending_snapshot = Some(devices);
                None
            }
        };
        let hello = hello(&self.settings.gateway_id, count, replica);
        if !self.write(&hello) {
            return;
        }
        if let LinkState::Up(conn) = &self.state {
            let _ = conn.send(WsMessage::Ping(HELLO_PROBE.into()));
        }
    }

    /// The platform answered `hello`: `acked` with a `welcome` taking up `ack` (and the
    /// `last_seq` it has), or not (a v1 platform's Pong, or a `welcome` without `ack`). Then
    /// the snapshot, and every owed frame in seq order. In acked mode the frames above the
    /// acknowledgement are re-sent first and the snapshot parts follow them as numbered
    /// frames; with a v1 platform the snapshot goes first, as protocol v1 has it.
    pub(super) fn on_ready(&mut self, acked: bool, last_seq: Option<u64>, ctx: &mut Context<Self>) {
        let since = match &self.state {
            LinkState::Up(conn) => match conn.phase {
                Phase::Negotiating => Instant::now(),
                Phase::Answered { since, .. } => since,
                Phase::Ready { .. } => return,
            },
            _ => return,
        };
        // The leader of replicas: the snapshot follows the events already numbered, so it is
        // read once the index has applied the feed's position (`numbered`).
        let fresh = self.cluster_snapshot(since);
        let LinkState::Up(conn) = &mut self.state else {
            return;
        };
        let fresh = match fresh {
            Ok(fresh) => fresh,
            Err(()) => {
                conn.phase = Phase::Answered {
                    acked,
                    last_seq,
                    since,
                };
                let generation = conn.generation;
                ctx.run_later(super::numbered::SNAPSHOT_RETRY, move |link, ctx| {
                    if matches!(&link.state, LinkState::Up(c) if c.generation == generation) {
                        link.on_ready(acked, last_seq, ctx);
                    }
                });
                return;
            }
        };
        conn.phase = Phase::Ready { acked };
        if let (true, Some(n), Some(_)) = (acked, last_seq, &self.feed) {
            // Seqs of a cluster have holes: the platform may have one above ours (sent by the
            // previous leader), and everything up to it is acknowledged.
            self.outbox.skip_to(n.saturating_add(1));
        }
        let done = self.outbox.connected(acked, last_seq);
        self.forget_stored(&done);
        // Acked mode numbers the snapshot behind every event numbered since the dial (the
        // platform's answer to hello takes a round trip): the one read at the dial is older
        // than those events and would undo them, so it is read again now. Every part keeps
        // room for its seq. Version 1 writes the dial's snapshot first, before those events.
        let bound = if acked {
            self.frame_bound.saturating_sub(SEQ_ROOM)
        } else {
            self.frame_bound
        };
        let parts = match (fresh, self.pending_snapshot.take()) {
            (Some(devices), _) => snapshot_parts(&devices, bound),
            (None, Some(devices)) if !acked => snapshot_parts(&devices, bound),
            (None, _) => snapshot_parts(&self.snapshot.snapshot(), bound),
        };
        log::info!(
            "platform link: connected to {} as {:?} ({}); sending snapshot of {} devices in {} parts (largest {} bytes, bound {}), {} owed frames",
            loggable_url(&self.settings.url),
            self.settings.gateway_id,
            if acked { "protocol 1.1, acknowledged delivery" } else { "protocol v1" },
            parts.devices,
            parts.frames.len(),
            parts.largest_part,
            self.frame_bound,
            self.outbox.unsent()
        );
        if parts.truncated + parts.skipped > 0 {
            self.stats.devices_truncated += parts.truncated as u64;
            self.stats.devices_skipped += parts.skipped as u64;
            if let Some(n) = OVERSIZE_LOG.note() {
                log::warn!(
                    "platform link: {} device(s) too big for a frame of {} bytes went into the snapshot with their links truncated (\"links_truncated\": true) and {} larger even without links were left out ({n} oversize event(s) in the last {} s); raise platform.max_frame_bytes if the platform accepts larger frames",
                    parts.truncated,
                    self.frame_bound,
                    parts.skipped,
                    crate::limits::log_throttle::REPORT_EVERY_S
                );
            }
        }
        if acked {
            let now = now_ms();
            let mut last = None;
            for frame in &parts.frames {
                match frame.to_json() {
                    Ok(text) => {
                        self.reserve_seq();
                        if !self.number_non_event() {
                            break;
                        }
                        last = Some(self.outbox.push(Class::Snapshot, text, false, now).seq);
                    }
                    Err(e) => log::error!("platform link: a snapshot part did not serialize: {e}"),
                }
            }
            if let LinkState::Up(conn) = &mut self.state {
                conn.snapshot_last_seq = last;
            }
        } else {
            // The snapshot goes first and whole, whatever the writer's backlog.
            for frame in &parts.frames {
                if !self.write(frame) {
                    return;
                }
            }
            // Answered only once the platform has read every part before it (frames are read
            // in order): the proof the snapshot was accepted, which resets the back-off.
            if let LinkState::Up(conn) = &self.state {
                let _ = conn.send(WsMessage::Ping(SNAPSHOT_PROBE.into()));
            }
        }
        self.stats.connected = true;
        self.stats.acked_mode = acked;
        self.pump(ctx);
    }
}

/// Room kept in every frame for the `"seq":N,` added in acked mode.
pub(super) const SEQ_ROOM: usize = 32;

/// Whether a `welcome` takes up acknowledged delivery.
pub(super) fn takes_up_ack(features: &[String]) -> bool {
    features.iter().any(|f| f == FEATURE_ACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_lose_credentials_and_queries() {
        assert_eq!(
            loggable_url("wss://user:secret@platform.example:8443/gw?token=abc"),
            "wss://platform.example:8443/gw"
        );
        assert_eq!(loggable_url("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000");
        assert_eq!(loggable_url("ws://h/p#frag"), "ws://h/p");
    }

    #[test]
    fn http_401_and_403_mean_a_refused_token() {
        use awc::http::StatusCode;
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(
                StatusCode::UNAUTHORIZED
            )),
            LinkError::Unauthorized { status: 401 }
        );
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(StatusCode::FORBIDDEN)),
            LinkError::Unauthorized { status: 403 }
        );
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(StatusCode::NOT_FOUND)),
            LinkError::UpgradeRefused { status: 404 }
        );
    }
}
