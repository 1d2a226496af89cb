//! A [`SnapshotSource`] whose first snapshot stalls the link's thread: it reads its source at
//! once, tells the test it has, and then waits until the test releases it (at most 30 s). The
//! test meanwhile changes the registry and queues frames for the link, which piles them up
//! behind the connect that asked for the snapshot.
#![allow(dead_code)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coap_gateway::platform::SnapshotSource;
use coap_gateway::registry::Registration;

pub struct StallingSnapshot<S> {
    source: S,
    first: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

/// The test's side: wait until the link is stalled in its first snapshot, then release it.
pub struct Stall {
    entered: Option<mpsc::Receiver<()>>,
    release: mpsc::Sender<()>,
}

impl<S: SnapshotSource> StallingSnapshot<S> {
    pub fn new(source: S) -> (Arc<StallingSnapshot<S>>, Stall) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let snapshot = Arc::new(StallingSnapshot {
            source,
            first: Mutex::new(Some((entered_tx, release_rx))),
        });
        let stall = Stall {
            entered: Some(entered),
            release,
        };
        (snapshot, stall)
    }
}

impl<S: SnapshotSource> SnapshotSource for StallingSnapshot<S> {
    fn snapshot(&self) -> Vec<Arc<Registration>> {
        let devices = self.source.snapshot();
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        if let Some((entered, release)) = first {
            let _ = entered.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
        devices
    }
}

impl Stall {
    /// Whether the link took its first snapshot within 20 s (waits without blocking the
    /// test's actix thread).
    pub async fn entered(&mut self) -> bool {
        let Some(entered) = self.entered.take() else {
            return true;
        };
        actix_rt::task::spawn_blocking(move || {
            entered.recv_timeout(Duration::from_secs(20)).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    pub fn release(&self) {
        let _ = self.release.send(());
    }
}
