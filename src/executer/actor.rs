//! The Executer actor: turns each platform `command` into one CoAP request to the
//! device and answers exactly one `command_result` for it through the PlatformLink
//! (docs/platform-protocol.md).
//!
//! Started by `gateway::start` when the platform link is configured; the link delivers
//! `PlatformCommand`s to it (`SetCommandRecipient`), and it answers with
//! `SendFrame(OutboundFrame::CommandResult(..))`. Requests leave from the RD's sockets through
//! its `CoapClient` (RFC 7252 §4: CON retransmission; RFC 7959: Block1/Block2), so a device
//! sees the address it registered with. Each request runs as a future spawned on the actor's
//! context; at most `max_in_flight` run at once. A command id seen again within the dedup
//! window gets the first execution's result (waiting for it when it is still running).
//!
//! Results go to the link with `try_send` (its mailbox is bounded). A result the link's full
//! mailbox refuses is not dropped: it waits, in order, in a queue of at most
//! [`PENDING_RESULTS`] retried every [`RETRY_EVERY`]. Commands themselves arrive from that same
//! link, so a link too busy to take results also sends few commands; the queue fills only if
//! the link stalls for long. Past it a result is dropped, counted
//! (`command_results_dropped_total`) and logged; the platform's retry of that id gets the
//! remembered result from the dedup window.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use log::debug;

use super::dedup::{CommandSeen, Dedup};
use super::plan::{choose_registration, device_key, plan, CommandRefusal, Plan};
use crate::coap::{ClientError, CoapClient};
use crate::limits::LogThrottle;
use crate::pinger::{dtls_of, registration_target};
use crate::platform::protocol::{CommandErrorKind, CommandOutcome, CommandResult, OutboundFrame};
use crate::platform::{Command, PlatformCommand, SendFrame};
use crate::rd::resolve::gateway_may_contact;
use crate::registry::liveness::LastSeen;
use crate::registry::{RegistryReader, Status};
use crate::time::now_ms;

/// Finished command ids remembered at most (the window bounds them in time too).
const DEDUP_CAPACITY: usize = 100_000;

/// Results the link's mailbox refused, waiting to be handed over again (one per command).
pub(crate) const PENDING_RESULTS: usize = 4096;
/// How often waiting results are offered to the link again.
pub(crate) const RETRY_EVERY: Duration = Duration::from_millis(20);
/// Deferred and dropped results: one log line per kind per 10 s.
static DEFERRED_LOG: LogThrottle = LogThrottle::new();
static DROPPED_LOG: LogThrottle = LogThrottle::new();

/// Extra time past a command's budget before the Executer gives up on the CoAP layer itself:
/// the client enforces the budget, this only guarantees the one result is always sent.
const GUARD_SLACK: Duration = Duration::from_millis(250);

/// The Executer's knobs, from `executer.*` in the config.
#[derive(Debug, Clone)]
pub struct ExecuterSettings {
    pub default_timeout: Duration,
    pub max_in_flight: usize,
    pub send_to_offline: bool,
    pub dedup_window: Duration,
}

/// Counters for tests and metrics.
#[derive(Message)]
#[rtype(result = "ExecuterStats")]
pub struct GetExecuterStats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecuterStats {
    /// Commands received, duplicates included.
    pub received: u64,
    /// CoAP requests sent to devices.
    pub executed: u64,
    /// Duplicates answered from (or waiting for) a first execution.
    pub duplicates: u64,
    /// Results sent, duplicates' included.
    pub results: u64,
    pub in_flight: usize,
    /// Results the link's full mailbox refused at first (they waited and were retried).
    pub results_deferred: u64,
    /// Results dropped because [`PENDING_RESULTS`] were already waiting.
    pub results_dropped: u64,
    /// Results waiting for room in the link's mailbox now.
    pub results_pending: usize,
}

pub struct Executer {
    settings: ExecuterSettings,
    reader: RegistryReader,
    client: CoapClient,
    /// The platform link; `None` for the console's own Executer on a gateway without one.
    results: Option<Recipient<SendFrame>>,
    dedup: Dedup<CommandResult>,
    /// Duplicates waiting for a running command's result, by id.
    waiting: HashMap<String, u32>,
    /// Results the link's mailbox refused, oldest first.
    pending: VecDeque<CommandResult>,
    stats: ExecuterStats,
}

impl Executer {
    pub(crate) fn new(
        settings: ExecuterSettings,
        reader: RegistryReader,
        client: CoapClient,
        results: Option<Recipient<SendFrame>>,
    ) -> Self {
        let window_ms = u64::try_from(settings.dedup_window.as_millis()).unwrap_or(u64::MAX);
        Executer {
            dedup: Dedup::new(window_ms, DEDUP_CAPACITY),
            settings,
            reader,
            client,
            results,
            waiting: HashMap::new(),
            pending: VecDeque::new(),
            stats: ExecuterStats::default(),
        }
    }

    /// Everything short of sending: the registration, its status, the request.
    fn prepare(&self, command: &Command) -> Result<(Plan, LastSeen), CommandRefusal> {
        let key = device_key(command)?;
        let exact = self.reader.find(&key.ep, key.d.as_ref());
        let registration = choose_registration(&key, exact, || self.reader.find_ep(&key.ep))?;
        if registration.status == Status::Disconnected && !self.settings.send_to_offline {
            return Err(CommandRefusal {
                kind: CommandErrorKind::DeviceOffline,
                message: format!(
                    "device {:?} is offline (status 0)",
                    registration.ep.as_str()
                ),
            });
        }
        let mut plan = plan(command, &registration.base, self.settings.default_timeout)?;
        // A link-local base needs the interface the device registered over.
        if let Ok(peer) = registration_target(&registration.base, registration.source) {
            plan.peer = peer;
        }
        if let Some(identity) = dtls_of(&registration) {
            plan.request.secure = true;
            plan.request.dtls_identity = identity;
        }
        // The RD refuses such a base now, but one stored by an older version
        // must not carry platform commands to a service on the gateway's own host.
        if !gateway_may_contact(plan.peer.ip(), registration.source.ip()) {
            return Err(CommandRefusal {
                kind: CommandErrorKind::CoapError,
                message: format!(
                    "device cannot be addressed: its base {:?} names the gateway's own host \
                     and it registered from {}; the gateway does not send there",
                    registration.base, registration.source
                ),
            });
        }
        Ok((plan, registration.last_seen.clone()))
    }

    fn send(&mut self, result: CommandResult) {
        if self.results.is_none() {
            return;
        }
        self.stats.results += 1;
        if !self.pending.is_empty() {
            // Keep results in order behind those already waiting.
            self.defer(result);
            self.retry_pending();
            return;
        }
        // Never a clone of the recipient: each actix sender has a guaranteed slot of its own,
        // so a fresh clone per send would get past the link's full mailbox every time.
        let refused = match &self.results {
            Some(results) => results.try_send(SendFrame(OutboundFrame::CommandResult(result))),
            None => Ok(()),
        };
        if let Err(SendError::Full(SendFrame(OutboundFrame::CommandResult(result)))) = refused {
            self.defer(result);
        }
    }

    fn defer(&mut self, result: CommandResult) {
        if self.pending.len() >= PENDING_RESULTS {
            self.stats.results_dropped += 1;
            crate::metrics::global().record_command_result_dropped();
            if let Some(n) = DROPPED_LOG.note() {
                log::error!(
                    "executer: {n} command result(s) dropped in the last {} s: the platform link took none of the {PENDING_RESULTS} waiting (a retry of the id gets the remembered result)",
                    crate::limits::log_throttle::REPORT_EVERY_S
                );
            }
            return;
        }
        self.stats.results_deferred += 1;
        if let Some(n) = DEFERRED_LOG.note() {
            log::warn!(
                "executer: {n} command result(s) waiting in the last {} s: the platform link's mailbox is full",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
        self.pending.push_back(result);
        self.stats.results_pending = self.pending.len();
    }

    /// Hand waiting results to the link, oldest first, until its mailbox refuses one.
    fn retry_pending(&mut self) {
        let Some(results) = &self.results else {
            self.pending.clear();
            return;
        };
        while let Some(result) = self.pending.pop_front() {
            match results.try_send(SendFrame(OutboundFrame::CommandResult(result))) {
                Ok(()) => {}
                Err(SendError::Full(SendFrame(OutboundFrame::CommandResult(result)))) => {
                    self.pending.push_front(result);
                    break;
                }
                // The link is gone (shutdown): nothing can carry them any more.
                Err(_) => {
                    self.pending.clear();
                    break;
                }
            }
        }
        self.stats.results_pending = self.pending.len();
    }

    /// A command (first of its id) ended: answer it and every duplicate waiting for it.
    /// Only a command that reached the device is remembered for later duplicates; a refusal
    /// (unknown device, offline, bad command, overloaded) sent nothing, so a retry runs.
    fn finish(&mut self, result: CommandResult, reached_device: bool) {
        crate::metrics::global().record_command((&result).into(), result.round_trip_ms());
        match &result.outcome {
            CommandOutcome::Failed { error } => log::log!(
                crate::platform::protocol::command_failure_level(error.kind),
                "executer: command {:?} failed: {:?}: {}",
                result.id,
                error.kind,
                error.message
            ),
            CommandOutcome::Response { code, rtt_ms, .. } => debug!(
                "executer: command {:?} answered {code} in {rtt_ms} ms",
                result.id
            ),
        }
        let waiting = self.waiting.remove(&result.id).unwrap_or(0);
        for _ in 0..waiting {
            self.send(result.clone());
        }
        // The CoAP layer's own overload also means nothing was sent.
        let overloaded = matches!(
            &result.outcome,
            CommandOutcome::Failed { error } if error.kind == CommandErrorKind::Overloaded
        );
        let id = result.id.clone();
        if overloaded || !reached_device {
            self.dedup.forget(&id);
        } else {
            self.dedup.finish(&id, result.clone(), now_ms());
        }
        self.send(result);
    }

    fn execute(&mut self, command: Command, ctx: &mut Context<Self>) {
        let id = command.id.clone();
        match self.start_exchange(command) {
            Ok(exchange) => {
                ctx.spawn(exchange.into_actor(self).map(|result, act, _| {
                    act.exchange_done();
                    act.finish(result, true);
                }));
            }
            Err(refusal) => self.finish(
                CommandResult::failed(id, refusal.kind, refusal.message),
                false,
            ),
        }
    }

    /// Plan `command` and take an in-flight slot: the returned future is the CoAP exchange,
    /// which ends in the command's result (the caller then calls [`Self::exchange_done`]).
    /// Refused (nothing sent) when the command cannot be planned or the slots are taken.
    fn start_exchange(
        &mut self,
        command: Command,
    ) -> Result<impl std::future::Future<Output = CommandResult> + 'static, CommandRefusal> {
        let (plan, last_seen) = self.prepare(&command)?;
        if self.stats.in_flight >= self.settings.max_in_flight {
            return Err(CommandRefusal {
                kind: CommandErrorKind::Overloaded,
                message: format!(
                    "{} commands already running (executer.max_in_flight)",
                    self.stats.in_flight
                ),
            });
        }
        self.stats.in_flight += 1;
        crate::metrics::global().command_in_flight(true);
        self.stats.executed += 1;
        let client = self.client.clone();
        let id = command.id;
        let guard = plan.budget.saturating_add(GUARD_SLACK);
        Ok(async move {
            // Dropping the request future (on the guard's expiry) cancels the exchange.
            match tokio::time::timeout(guard, client.request(plan.peer, plan.request)).await {
                Ok(Ok(response)) => {
                    // Any answer, an error code included, means the device is there.
                    last_seen.touch(now_ms());
                    CommandResult::response(
                        id,
                        response.code.to_string(),
                        response.content_format,
                        &response.payload,
                        u64::try_from(response.rtt.as_millis()).unwrap_or(u64::MAX),
                    )
                }
                Ok(Err(e)) => failed_from(id, e, plan.budget),
                Err(_) => failed_from(id, ClientError::Timeout, plan.budget),
            }
        })
    }

    fn exchange_done(&mut self) {
        self.stats.in_flight -= 1;
        crate::metrics::global().command_in_flight(false);
    }
}

/// The `command_result` error for a failed CoAP exchange.
fn failed_from(id: String, error: ClientError, budget: Duration) -> CommandResult {
    let (kind, message) = match error {
        ClientError::Timeout => (
            CommandErrorKind::Timeout,
            format!("no response within {} ms", budget.as_millis()),
        ),
        ClientError::Overloaded | ClientError::PeerBusy { .. } => (
            CommandErrorKind::Overloaded,
            "the CoAP layer has too many requests in flight".to_string(),
        ),
        e @ (ClientError::Reset
        | ClientError::Unreachable(_)
        | ClientError::Cancelled
        | ClientError::Protocol(_)
        | ClientError::Io(_)) => (CommandErrorKind::CoapError, e.to_string()),
    };
    CommandResult::failed(id, kind, message)
}

impl Actor for Executer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RETRY_EVERY, |act, _| {
            if !act.pending.is_empty() {
                act.retry_pending();
            }
        });
    }
}

impl Handler<PlatformCommand> for Executer {
    type Result = ();

    fn handle(&mut self, msg: PlatformCommand, ctx: &mut Context<Self>) {
        let command = msg.command;
        self.stats.received += 1;
        debug!(
            "executer: command {:?}: {:?} {} to ep {:?} d {:?}",
            command.id, command.method, command.path, command.ep, command.d
        );
        match self.dedup.begin(&command.id, now_ms()) {
            CommandSeen::New => self.execute(command, ctx),
            CommandSeen::Running => {
                self.stats.duplicates += 1;
                debug!(
                    "executer: command {:?} is a duplicate of a running one",
                    command.id
                );
                *self.waiting.entry(command.id).or_insert(0) += 1;
            }
            CommandSeen::Done(result) => {
                self.stats.duplicates += 1;
                debug!(
                    "executer: command {:?} already answered; sending that again",
                    command.id
                );
                self.send(result);
            }
        }
    }
}

/// A request from the operator console (`admin`): planned and sent like a platform command,
/// but answered to the caller instead of the platform, and never deduplicated (each click is
/// a new request).
#[derive(Message)]
#[rtype(result = "CommandResult")]
pub struct ConsoleCommand(pub Command);

impl Handler<ConsoleCommand> for Executer {
    type Result = ResponseActFuture<Self, CommandResult>;

    fn handle(&mut self, msg: ConsoleCommand, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0.id.clone();
        match self.start_exchange(msg.0) {
            Ok(exchange) => Box::pin(exchange.into_actor(self).map(|result, act, _| {
                act.exchange_done();
                result
            })),
            Err(refusal) => Box::pin(actix::fut::ready(CommandResult::failed(
                id,
                refusal.kind,
                refusal.message,
            ))),
        }
    }
}

impl Handler<GetExecuterStats> for Executer {
    type Result = MessageResult<GetExecuterStats>;

    fn handle(&mut self, _: GetExecuterStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats)
    }
}

/// Start the Executer on the current arbiter. `results`: the platform link its commands come
/// from; `None` for one that only runs the console's requests ([`ConsoleCommand`]).
pub fn start(
    settings: ExecuterSettings,
    reader: RegistryReader,
    client: CoapClient,
    results: Option<Recipient<SendFrame>>,
) -> Addr<Executer> {
    Executer::new(settings, reader, client, results).start()
}
