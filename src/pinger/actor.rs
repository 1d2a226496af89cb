//! The Pinger actor: every `pinger.interval_s` it pings each live registration at
//! its base address with an empty CON (RFC 7252 §4.3) through the RD's `CoapClient`, and asks
//! the Registry (`SetStatus`) to mark a device 0 after `attempts` consecutive unanswered
//! pings and 1 on its first answer. It never writes state itself.
//!
//! Started by `gateway::start` when `pinger.enabled`. Pings run as futures spawned on the
//! actor's context, so a sweep never blocks the actor or anything else; at most
//! `max_in_flight` devices are being pinged at once, a sweep is released in slices every
//! [`TICK`] (see `schedule::plan_sweep`), and a device still being pinged from an earlier sweep
//! is skipped by the next one. A device already at 0 gets a single attempt per sweep.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{debug, info, warn};

use super::schedule::{
    attempts_for, classify, plan_sweep, status_change, Attempt, Attempts, Next, SweepTally,
    Verdict, TICK,
};
use super::target::{dtls_of, registration_target};
use crate::coap::CoapClient;
use crate::rd::resolve::gateway_may_contact;
use crate::registry::etcd::Ownership;
use crate::registry::{Registration, RegistrationId, Registry, RegistryReader, SetStatus, Status};
use crate::time::now_ms;

/// How often a replica looks whether its ownership changed (a takeover starts a sweep).
const OWNERSHIP_CHECK: Duration = Duration::from_millis(250);

/// The Pinger's knobs, from `pinger.*` in the config.
#[derive(Debug, Clone)]
pub(crate) struct PingerSettings {
    pub interval: Duration,
    /// Budget of one attempt.
    pub timeout: Duration,
    pub attempts: u32,
    pub max_in_flight: usize,
}

/// Stop pinging (sent by the gateway before it shuts the CoAP endpoint down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPinger;

/// One device's turn in a sweep.
struct Job {
    registration: Arc<Registration>,
    peer: SocketAddr,
    /// Over DTLS (a `coaps://` base), as this identity (`target::dtls_of`).
    dtls: Option<Option<Arc<str>>>,
    sweep: u64,
}

/// A sweep still in progress.
struct Sweep {
    number: u64,
    started: Instant,
    tally: SweepTally,
}

pub struct Pinger {
    settings: PingerSettings,
    registry: Addr<Registry>,
    reader: RegistryReader,
    client: CoapClient,
    /// Planned but not yet released (the spread part of a sweep).
    planned: VecDeque<Job>,
    /// Released, waiting for an in-flight slot.
    ready: VecDeque<Job>,
    /// Devices planned, ready or being pinged: a new sweep leaves them out.
    busy: HashSet<RegistrationId>,
    in_flight: usize,
    per_tick: usize,
    sweeps: Vec<Sweep>,
    next_sweep: u64,
    /// With replicas (`registry.backend: etcd`): only registrations this replica owns are
    /// pinged, and a change of ownership starts a sweep at once (a takeover).
    ownership: Option<(Ownership, u64)>,
}

impl Pinger {
    pub(crate) fn new(
        settings: PingerSettings,
        registry: Addr<Registry>,
        reader: RegistryReader,
        client: CoapClient,
    ) -> Self {
        Pinger {
            settings,
            registry,
            reader,
            client,
            planned: VecDeque::new(),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            in_flight: 0,
            per_tick: 1,
            sweeps: Vec::new(),
            next_sweep: 1,
            ownership: None,
        }
    }

    /// Ping only what this replica owns (`docs/ha-etcd.md` §7).
    pub(crate) fn with_ownership(mut self, ownership: Ownership) -> Self {
        let generation = ownership.generation();
        self.ownership = Some((ownership, generation));
        self
    }

    /// A member came or went, or this replica joined: sweep now, so gained devices are pinged
    /// without waiting for the next interval (what is already planned or pinged is skipped).
    fn check_ownership(&mut self, ctx: &mut Context<Self>) {
        let Some((ownership, seen)) = &mut self.ownership else {
            return;
        };
        let now = ownership.generation();
        if now != *seen {
            *seen = now;
            self.start_sweep(ctx);
        }
    }

    fn start_sweep(&mut self, ctx: &mut Context<Self>) {
        let number = self.next_sweep;
        self.next_sweep += 1;
        let now = now_ms();
        let busy = &self.busy;
        let ownership = self.ownership.as_ref().map(|(o, _)| o);
        let mut skipped = 0usize;
        let jobs: Vec<Job> = self.reader.with_index(|idx| {
            idx.live(now)
                .filter(|reg| ownership.is_none_or(|o| o.owns(reg.id)))
                .filter_map(|reg| {
                    if busy.contains(&reg.id) {
                        skipped += 1;
                        return None;
                    }
                    match registration_target(&reg.base, reg.source) {
                        // Never the gateway's own host for a foreign
                        // registrant (a base stored by an older version).
                        Ok(peer) if !gateway_may_contact(peer.ip(), reg.source.ip()) => {
                            debug!(
                                "pinger: not pinging {} ({}): base names this host",
                                reg.ep, reg.id
                            );
                            skipped += 1;
                            None
                        }
                        Ok(peer) => Some(Job {
                            registration: Arc::clone(reg),
                            peer,
                            dtls: dtls_of(reg),
                            sweep: number,
                        }),
                        Err(e) => {
                            debug!("pinger: not pinging {} ({}): {e}", reg.ep, reg.id);
                            skipped += 1;
                            None
                        }
                    }
                })
                .collect()
        });
        let plan = plan_sweep(jobs.len(), self.settings.interval);
        self.per_tick = plan.per_tick;
        debug!(
            "pinger: sweep {number} of {} devices over {} ticks",
            jobs.len(),
            plan.ticks
        );
        let tally = SweepTally {
            planned: jobs.len(),
            skipped,
            ..Default::default()
        };
        let sweep = Sweep {
            number,
            started: Instant::now(),
            tally,
        };
        if jobs.is_empty() {
            debug!("pinger: sweep {number}: nothing to ping ({skipped} skipped)");
            return;
        }
        for job in jobs {
            self.busy.insert(job.registration.id);
            self.planned.push_back(job);
        }
        self.sweeps.push(sweep);
        // The first slice goes at once, so a small fleet is pinged right at the sweep's start.
        self.release_slice(ctx);
    }

    fn release_slice(&mut self, ctx: &mut Context<Self>) {
        let n = self.per_tick.min(self.planned.len());
        self.ready.extend(self.planned.drain(..n));
        self.start_ready(ctx);
    }

    fn start_ready(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.settings.max_in_flight {
            let Some(job) = self.ready.pop_front() else {
                break;
            };
            self.in_flight += 1;
            let client = self.client.clone();
            let timeout = self.settings.timeout;
            let attempts = attempts_for(job.registration.status, self.settings.attempts);
            let peer = job.peer;
            let dtls = job.dtls.clone();
            let ping = async move {
                let first_sent_ms = now_ms();
                let mut counter = Attempts::new(attempts);
                loop {
                    let result = client.ping_over(peer, dtls.clone(), timeout).await;
                    let attempt = classify(&result);
                    if attempt != Attempt::NotTried {
                        crate::metrics::global().record_ping(attempt == Attempt::Answered);
                    }
                    if let (Attempt::NotTried, Err(e)) = (attempt, &result) {
                        debug!("pinger: could not ping {peer}: {e}");
                    }
                    if let Next::Done(verdict) = counter.record(attempt) {
                        return (verdict, first_sent_ms, counter.failed());
                    }
                }
            };
            ctx.spawn(
                ping.into_actor(self)
                    .map(move |(verdict, sent_ms, failed), act, ctx| {
                        act.finish(job, verdict, sent_ms, failed, ctx)
                    }),
            );
        }
    }

    fn finish(
        &mut self,
        job: Job,
        verdict: Verdict,
        first_sent_ms: u64,
        failed: u32,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        let id = job.registration.id;
        self.busy.remove(&id);
        let current = self.reader.get(id);
        if let Some(current) = &current {
            if verdict == Verdict::Alive {
                current.last_seen.touch(now_ms());
            }
            let refreshed = current.updated_at_ms >= first_sent_ms;
            if let Some(status) = status_change(current.status, verdict, refreshed) {
                self.set_status(current, job.peer, status, failed, ctx);
            }
        }
        if let Some(pos) = self.sweeps.iter().position(|s| s.number == job.sweep) {
            let sweep = &mut self.sweeps[pos];
            sweep.tally.record(verdict);
            if current.is_none() {
                sweep.tally.gone += 1;
            }
            if sweep.tally.is_complete() {
                let sweep = self.sweeps.swap_remove(pos);
                let t = &sweep.tally;
                info!(
                    "pinger: sweep {} done in {} ms: pinged {}, alive {}, failed {}, \
                     inconclusive {}, skipped {}, removed meanwhile {}",
                    sweep.number,
                    sweep.started.elapsed().as_millis(),
                    t.planned,
                    t.alive,
                    t.silent,
                    t.inconclusive,
                    t.skipped,
                    t.gone
                );
            }
        }
        self.start_ready(ctx);
    }

    fn set_status(
        &self,
        reg: &Registration,
        peer: SocketAddr,
        status: Status,
        failed: u32,
        ctx: &mut Context<Self>,
    ) {
        let ep = reg.ep.to_string();
        let id = reg.id;
        let request = self.registry.send(SetStatus { id, status });
        ctx.spawn(
            async move {
                match request.await {
                    Ok(Ok(true)) => match status {
                        Status::Disconnected => info!(
                            "pinger: {ep} ({id}) at {peer} is disconnected (status 0) \
                             after {failed} unanswered pings"
                        ),
                        Status::Connected => {
                            info!("pinger: {ep} ({id}) at {peer} answers again (status 1)")
                        }
                    },
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => warn!("pinger: cannot set status of {ep} ({id}): {e}"),
                    Err(e) => warn!("pinger: registry unreachable for {ep} ({id}): {e}"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Pinger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        info!(
            "pinger: every {} s, {} attempts of {} ms, at most {} in flight",
            self.settings.interval.as_secs(),
            self.settings.attempts,
            self.settings.timeout.as_millis(),
            self.settings.max_in_flight
        );
        ctx.run_interval(self.settings.interval, |act, ctx| act.start_sweep(ctx));
        if self.ownership.is_some() {
            ctx.run_interval(OWNERSHIP_CHECK, |act, ctx| act.check_ownership(ctx));
        }
        ctx.run_interval(TICK, |act, ctx| {
            if !act.planned.is_empty() {
                act.release_slice(ctx);
            }
        });
    }
}

impl Handler<StopPinger> for Pinger {
    type Result = ();

    fn handle(&mut self, _: StopPinger, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Start the Pinger on the current actix system.
pub(crate) fn start(
    settings: PingerSettings,
    registry: Addr<Registry>,
    reader: RegistryReader,
    client: CoapClient,
    ownership: Option<Ownership>,
) -> Addr<Pinger> {
    let pinger = Pinger::new(settings, registry, reader, client);
    match ownership {
        Some(ownership) => pinger.with_ownership(ownership),
        None => pinger,
    }
    .start()
}
