//! What the platform sends the PlatformLink: the reader stream's items (frames, its end, a
//! failed writer), each tagged with its connection so that a late item from a replaced one is
//! ignored; text frames parsed into commands (forwarded to the command recipient, or refused
//! with `bad_command` when there is none) or answered with an `error` frame.

use std::time::Instant;

use actix::prelude::*;
use actix_http::ws::Item;
use awc::ws::{Frame, Message as WsMessage};

use super::connection::{LinkState, Phase};
use super::dial::takes_up_ack;
use super::PlatformLink;
use crate::platform::messages::PlatformCommand;
use crate::platform::outbox::Class;
use crate::platform::protocol::{
    command_failure_level, parse_inbound, Command, CommandErrorKind, CommandResult, InboundFrame,
    InboundFrameError, OutboundFrame, PLATFORM_FAULT_LEVEL,
};
use crate::time::now_ms;

/// What the socket reader hands the actor, tagged with the connection it came from so that a
/// late item from a replaced connection is ignored.
pub(super) enum Inbound {
    Frame(u64, Result<Frame, awc::error::WsProtocolError>),
    Closed(u64),
}

impl PlatformLink {
    fn on_text(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => parse_inbound(text),
            Err(e) => Err(InboundFrameError::MalformedJson {
                reason: format!("text frame is not UTF-8: {e}"),
            }),
        };
        match parsed {
            Ok(InboundFrame::Command(command)) => self.forward_command(command, ctx),
            Ok(InboundFrame::Welcome { features, last_seq }) => {
                let negotiating =
                    matches!(&self.state, LinkState::Up(c) if c.phase == Phase::Negotiating);
                if negotiating {
                    self.on_ready(takes_up_ack(&features), last_seq, ctx);
                } else {
                    log::debug!("platform link: a welcome after the negotiation is ignored");
                }
            }
            Ok(InboundFrame::Ack { seq }) => self.on_ack(seq, ctx),
            Ok(InboundFrame::Error { message, id }) => {
                log::warn!(
                    "platform link: the platform reported an error{}: {message}",
                    id.map(|id| format!(" for {id}")).unwrap_or_default()
                );
            }
            Err(error) => {
                log::log!(
                    PLATFORM_FAULT_LEVEL,
                    "platform link: unusable frame from the platform: {error}"
                );
                self.deliver(error.reply(), ctx);
            }
        }
    }

    /// The platform has every frame up to `seq`: they are done (and their records deleted).
    /// Only meaningful in acked mode; an ack on a v1 connection is ignored.
    fn on_ack(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        if conn.phase != (Phase::Ready { acked: true }) {
            log::debug!("platform link: ack {seq} outside acknowledged delivery ignored");
            return;
        }
        let snapshot_done = conn.snapshot_last_seq.is_some_and(|last| seq >= last);
        let done = self.outbox.ack(seq);
        self.forget_stored(&done);
        self.stats.last_ack = self.outbox.acked();
        self.publish_acked();
        if snapshot_done {
            self.accept_snapshot();
        }
        self.pump(ctx);
    }

    fn forward_command(&mut self, command: Command, ctx: &mut Context<Self>) {
        // The platform retries a command whose result it has not acknowledged yet: answer
        // with that result, whatever the Executer still remembers (its dedup window may be
        // shorter than the outage, or the gateway restarted since).
        if let Some(text) = self.outbox.owed_result(&command.id) {
            log::debug!(
                "platform link: command {:?} arrived again while its result is owed; sending that result again",
                command.id
            );
            let text = text.to_owned();
            self.deliver_text(Class::Result, text, ctx);
            return;
        }
        match &self.commands {
            Some(recipient) if recipient.connected() => {
                // do_send, not try_send: the Executer bounds its own work and answers
                // `overloaded` itself; a small actix mailbox must not refuse bursts here.
                recipient.do_send(PlatformCommand {
                    command,
                    received_at_ms: now_ms(),
                });
            }
            _ => {
                let message = "this gateway executes no commands (no command executer is running)";
                log::log!(
                    command_failure_level(CommandErrorKind::BadCommand),
                    "platform link: command {:?} refused: {message}",
                    command.id
                );
                let result =
                    CommandResult::failed(command.id, CommandErrorKind::BadCommand, message);
                self.deliver(OutboundFrame::CommandResult(result), ctx);
            }
        }
    }
}

impl StreamHandler<Inbound> for PlatformLink {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        let current = match &mut self.state {
            LinkState::Up(conn) => conn,
            _ => return,
        };
        let generation = match &item {
            Inbound::Frame(g, _) | Inbound::Closed(g) => *g,
        };
        if generation != current.generation {
            return;
        }
        current.last_heard = Instant::now();
        match item {
            Inbound::Closed(g) => self.on_lost(g, "closed by the network", ctx),
            Inbound::Frame(g, Err(e)) => self.on_lost(g, &format!("protocol error: {e}"), ctx),
            Inbound::Frame(g, Ok(frame)) => match frame {
                Frame::Text(bytes) => self.on_text(&bytes, ctx),
                Frame::Binary(_) => {
                    log::log!(
                        PLATFORM_FAULT_LEVEL,
                        "platform link: binary frame from the platform; answered with an error"
                    );
                    self.deliver(InboundFrameError::BinaryFrame.reply(), ctx);
                }
                Frame::Continuation(Item::Last(_)) => {
                    self.deliver(
                        OutboundFrame::Error {
                            message: "fragmented frames are not supported; send each JSON object in one text frame".into(),
                            id: None,
                        },
                        ctx,
                    );
                }
                Frame::Continuation(_) => {}
                Frame::Ping(payload) => {
                    if let LinkState::Up(conn) = &self.state {
                        let _ = conn.send(WsMessage::Pong(payload));
                    }
                }
                Frame::Pong(payload) => self.on_pong(&payload, ctx),
                Frame::Close(reason) => {
                    if reason
                        .as_ref()
                        .is_some_and(|r| r.code == awc::ws::CloseCode::Size)
                    {
                        self.lower_frame_bound();
                    }
                    let why = match reason {
                        Some(r) => format!(
                            "platform closed the link ({:?}{})",
                            r.code,
                            r.description.map(|d| format!(": {d}")).unwrap_or_default()
                        ),
                        None => "platform closed the link".to_owned(),
                    };
                    self.on_lost(g, &why, ctx);
                }
            },
        }
    }

    /// The reader stream ending is already reported by its `Closed` item; the actor must not
    /// stop (the default) when a connection ends.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// The socket writer of `generation` failed (private to the link).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriterFailed {
    pub(super) generation: u64,
    pub(super) error: String,
}

impl Handler<WriterFailed> for PlatformLink {
    type Result = ();

    fn handle(&mut self, failed: WriterFailed, ctx: &mut Context<Self>) {
        self.on_lost(
            failed.generation,
            &format!("write failed: {}", failed.error),
            ctx,
        );
    }
}
