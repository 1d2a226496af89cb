//! The platform link of a replica (`registry.backend: etcd`, `docs/ha-etcd.md` §8): only the
//! elected leader holds it, so the platform sees one gateway. When this replica is elected in
//! a term it starts a PlatformLink numbering by revision (hello with the cluster's
//! `gateway.id`, then the events and device data of the cluster feed from the platform's last
//! stored acknowledgement, the snapshot, then live frames) and an Executer for its commands;
//! when it loses the election (or a new term begins) it stops them. Device data is not the
//! leader's: every replica observes the devices it owns (`cluster::data_relay`).

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use crate::executer::Executer;
use crate::platform::{PlatformLink, StopLink};

/// How often the election's outcome is looked at.
const CHECK: Duration = Duration::from_millis(100);
/// A platform that does not answer our Close must not hold up a hand-over.
const CLOSE_BUDGET: Duration = Duration::from_secs(3);

/// A running link and the actors that belong to it.
pub struct RunningLink {
    pub link: Addr<PlatformLink>,
    pub arbiter: Arbiter,
    pub executer: Addr<Executer>,
}

/// Starts a link (and its Executer) when this replica becomes the leader, with the term
/// (the create revision of its `P/leader` key).
pub type StartLink = Box<dyn Fn(i64) -> RunningLink>;

/// Close the link at shutdown; resolves once it is closed (bounded).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopLeaderLink;

/// Follows the election and holds the link while this replica leads.
pub struct LeaderLink {
    leading: watch::Receiver<Option<i64>>,
    start: StartLink,
    running: Option<RunningLink>,
    /// The term the running link was opened in.
    term: i64,
    /// Set at shutdown: no link is opened any more.
    stopped: bool,
}

impl LeaderLink {
    pub fn new(leading: watch::Receiver<Option<i64>>, start: StartLink) -> LeaderLink {
        LeaderLink {
            leading,
            start,
            running: None,
            term: 0,
            stopped: false,
        }
    }

    fn follow(&mut self, ctx: &mut Context<Self>) {
        let term = (*self.leading.borrow()).filter(|_| !self.stopped);
        if self.running.is_some() && term != Some(self.term) {
            // Not the leader any more, or a new term (its writes are fenced on the new key).
            log::info!("cluster: not the leader any more; closing the platform link");
            if let Some(running) = self.running.take() {
                ctx.spawn(close(running).into_actor(self));
            }
        }
        if let (Some(term), None) = (term, &self.running) {
            log::info!("cluster: elected (term {term}); opening the platform link");
            self.term = term;
            self.running = Some((self.start)(term));
        }
    }
}

async fn close(running: RunningLink) {
    let RunningLink {
        link,
        arbiter,
        executer,
    } = running;
    let closed = async {
        let _ = link.send(StopLink).await;
        while link.connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(CLOSE_BUDGET, closed).await.is_err() {
        log::warn!("platform link did not close in time");
    }
    drop(executer);
    arbiter.stop();
}

impl Actor for LeaderLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(CHECK, |act, ctx| act.follow(ctx));
    }
}

impl Handler<StopLeaderLink> for LeaderLink {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopLeaderLink, _ctx: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        let running = self.running.take();
        Box::pin(
            async move {
                if let Some(running) = running {
                    close(running).await;
                }
            }
            .into_actor(self),
        )
    }
}
