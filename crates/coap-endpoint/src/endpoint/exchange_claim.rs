//! How the receive loop finds the exchange an ACK, RST or response belongs to: the routing
//! tables (by token, by peer and Message ID) and each exchange's claim on them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use coap_lite::Packet;
use tokio::sync::mpsc;

use super::{lock, Shared, EXCHANGE_EVENTS};
use crate::codec::MsgType;
use crate::dedup::FastBuild;

/// Something the receive loop delivers to a waiting exchange.
#[derive(Debug)]
pub(crate) enum Event {
    EmptyAck,
    Reset,
    Response {
        packet: Packet,
        mtype: MsgType,
    },
    /// A response we rejected (unknown critical option): the exchange fails.
    Rejected,
    /// A response to a request sent to a group, from the member that answered (RFC 7252 §8.2:
    /// members answer from their unicast addresses).
    GroupResponse {
        packet: Packet,
        from: SocketAddr,
    },
}

#[derive(Default)]
pub(crate) struct Exchanges {
    pub by_token: HashMap<[u8; 8], (SocketAddr, mpsc::Sender<Event>), FastBuild>,
    pub by_mid: HashMap<(SocketAddr, u16), mpsc::Sender<Event>, FastBuild>,
}

/// An exchange's claim on a token and/or MID in the routing tables, removed on drop (so a
/// cancelled request leaves nothing behind).
pub(crate) struct ExchangeClaim {
    shared: Arc<Shared>,
    token: Option<[u8; 8]>,
    mid: Option<(SocketAddr, u16)>,
    tx: mpsc::Sender<Event>,
    pub rx: mpsc::Receiver<Event>,
}

impl ExchangeClaim {
    pub fn new(shared: Arc<Shared>, peer: SocketAddr, token: Option<[u8; 8]>) -> ExchangeClaim {
        let (tx, rx) = mpsc::channel(EXCHANGE_EVENTS);
        if let Some(t) = token {
            lock(&shared.exchanges)
                .by_token
                .insert(t, (peer, tx.clone()));
        }
        ExchangeClaim {
            shared,
            token,
            mid: None,
            tx,
            rx,
        }
    }

    /// The next event, `Ok(None)` once the endpoint shuts down, `Err(())` when `wake` passes.
    pub async fn recv_until(&mut self, wake: Option<Instant>) -> Result<Option<Event>, ()> {
        // Created before the flag check: it then sees a notify_waiters() that races with us.
        let closing = self.shared.closing.notified();
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = self.rx.recv() => Ok(ev),
            _ = closing => Ok(None),
            _ = timer => Err(()),
        }
    }

    pub fn token(&self) -> Option<[u8; 8]> {
        self.token
    }

    /// Route empty ACK/RST for (peer, mid) here, instead of the previous message's.
    pub fn set_mid(&mut self, peer: SocketAddr, mid: u16) {
        let mut ex = lock(&self.shared.exchanges);
        if let Some(old) = self.mid.take() {
            ex.by_mid.remove(&old);
        }
        ex.by_mid.insert((peer, mid), self.tx.clone());
        self.mid = Some((peer, mid));
    }

    pub fn clear_mid(&mut self) {
        if let Some(old) = self.mid.take() {
            lock(&self.shared.exchanges).by_mid.remove(&old);
        }
    }
}

impl Drop for ExchangeClaim {
    fn drop(&mut self) {
        let mut ex = lock(&self.shared.exchanges);
        if let Some(t) = self.token {
            ex.by_token.remove(&t);
        }
        if let Some(m) = self.mid {
            ex.by_mid.remove(&m);
        }
    }
}
