//! The Observer actor against a real CoAP endpoint and registry: a flood of notifications
//! against a link that cannot take them (the Observer's queue and hand-off stay at their
//! bounds, the senders wait, and every value arrives once the link drains), and the resync of
//! the watches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::Semaphore;

use super::actor::{start, Device, Observer, WatchedDevices};
use super::forward::{queue_capacity, HANDOFF, MIN_QUEUE};
use super::observation::ObservationTask;
use super::settings::ObserverSettings;
use super::strategy::Selection;
use crate::coap::ClientResponse;
use crate::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, OutboundResponse, RequestHandler,
    TransmissionParams,
};
use crate::limits::TokenBucket;
use crate::platform::DataFrames;
use crate::registry::{
    BaseOrigin, EndpointName, Registration, RegistrationId, RegistryConfig, RegistryReader, Status,
};
use link_format::Link;

const LINK_CAPACITY: usize = 64;

struct NoDevice;

impl RequestHandler for NoDevice {
    fn handle(&self, _: InboundRequest) -> HandlerFuture {
        Box::pin(async { OutboundResponse::new(Code::NOT_FOUND) })
    }
}

/// Stands in for PlatformLink: a small mailbox; its thread can be stalled.
struct LinkSink {
    frames: Arc<AtomicUsize>,
}

impl Actor for LinkSink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(LINK_CAPACITY);
    }
}

impl Handler<DataFrames> for LinkSink {
    type Result = ();
    fn handle(&mut self, batch: DataFrames, _: &mut Context<Self>) {
        self.frames.fetch_add(batch.frames.len(), Ordering::SeqCst);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Block(std_mpsc::Sender<()>, std_mpsc::Receiver<()>);

impl Handler<Block> for LinkSink {
    type Result = ();
    fn handle(&mut self, Block(entered, release): Block, _: &mut Context<Self>) {
        let _ = entered.send(());
        let _ = release.recv_timeout(Duration::from_secs(30));
    }
}

fn registration(peer: SocketAddr) -> Arc<Registration> {
    Arc::new(Registration {
        status_history: Default::default(),
        last_seen: Default::default(),
        identity: None,
        id: RegistrationId(7),
        ep: EndpointName::new("sensor").unwrap(),
        d: None,
        base: format!("coap://{peer}").into(),
        base_origin: BaseOrigin::Explicit,
        lifetime_s: 3_600,
        attrs: Vec::new(),
        links: vec![Link::new("/t").with("obs", None)].into(),
        status: Status::Connected,
        registered_at_ms: 0,
        updated_at_ms: 0,
        expires_at_ms: u64::MAX,
        source: peer,
    })
}

fn response(i: usize) -> ClientResponse {
    ClientResponse {
        code: Code::CONTENT,
        content_format: Some(0),
        payload: i.to_string().into_bytes(),
        observe: Some(i as u32),
        max_age: None,
        etag: None,
        location_path: Vec::new(),
        location_query: Vec::new(),
        rtt: Duration::ZERO,
    }
}

/// A CoAP endpoint for the Observer's client and an empty registry in a temporary directory.
async fn endpoint_and_registry() -> (
    Endpoint,
    Addr<crate::registry::Registry>,
    RegistryReader,
    tempfile::TempDir,
) {
    let endpoint = Endpoint::bind(
        &["127.0.0.1:0".parse().unwrap()],
        TransmissionParams::default(),
        Arc::new(NoDevice),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (registry, reader) =
        crate::registry::start(RegistryConfig::in_dir(dir.path().join("db"))).unwrap();
    (endpoint, registry, reader, dir)
}

#[actix_rt::test]
async fn a_flood_larger_than_every_bound_waits_and_reaches_a_stalled_link_whole() {
    let (endpoint, _registry, reader, _dir) = endpoint_and_registry().await;
    let frames = Arc::new(AtomicUsize::new(0));
    let arbiter = Arbiter::new();
    let sink = {
        let frames = frames.clone();
        LinkSink::start_in_arbiter(&arbiter.handle(), move |_| LinkSink { frames })
    };
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    sink.do_send(Block(entered_tx, release_rx));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();

    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // A small fleet: the queue is its minimum, far below the flood.
    let settings = ObserverSettings {
        selection: Selection::parse(&["*"]).unwrap(),
        poll_interval: Duration::from_secs(3_600),
        only_changes: false,
        max_frames_per_s: 1_000_000,
        max_in_flight: 1,
        max_watched: 10,
        error_backoff_max: Duration::from_secs(600),
    };
    assert_eq!(queue_capacity(settings.max_watched), MIN_QUEUE);
    let mut handles = None;
    let client = endpoint.client();
    let observer = Observer::create(|_| {
        let mut observer = Observer::new(settings, reader, client, sink.clone().recipient());
        observer.devices.insert(
            RegistrationId(7),
            Device {
                reg: registration(peer),
                peer,
                generation: 1,
                links: Vec::new(),
                cancels: Vec::new(),
                tasks: Vec::new(),
                bucket: TokenBucket::full(1_000_000.0, std::time::Instant::now()),
                last_poll: HashMap::new(),
                poll_errors: HashMap::new(),
            },
        );
        handles = Some((Arc::clone(&observer.stats), observer.queue_tx.clone()));
        observer
    });
    let (stats, queue) = handles.unwrap();
    assert_eq!(
        observer.send(WatchedDevices).await.unwrap(),
        vec![RegistrationId(7)]
    );

    // More values than the link's hand-off permits and the queue together, from 50
    // observations, while the link cannot take any.
    let flood = HANDOFF + 2 * MIN_QUEUE;
    let task = |path: &str| ObservationTask {
        client: endpoint.client(),
        setups: Arc::new(Semaphore::new(1)),
        queue: queue.clone(),
        stats: Arc::clone(&stats),
        peer,
        dtls: None,
        id: RegistrationId(7),
        generation: 1,
        path: Arc::from(path),
    };
    let tasks: Vec<ObservationTask> = (0..50).map(|i| task(&format!("/t{i}"))).collect();
    let sender = actix_rt::spawn(async move {
        for i in 0..flood {
            assert!(tasks[i % tasks.len()].notify(response(i), None).await);
        }
    });
    // The Observer drains until the link's permits run out; then the queue fills and the
    // senders wait (counted), nothing is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stats.waited.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no sender ever waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.mailbox_full.load(Ordering::SeqCst), 0);
    assert!(stats.frames.load(Ordering::SeqCst) <= HANDOFF as u64);

    release.send(()).unwrap();
    sender.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while frames.load(Ordering::SeqCst) < flood {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {flood} frames reached the link",
            frames.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(frames.load(Ordering::SeqCst), flood);
    assert_eq!(stats.frames.load(Ordering::SeqCst), flood as u64);
    assert_eq!(stats.mailbox_full.load(Ordering::SeqCst), 0);
    assert_eq!(stats.rate_dropped.load(Ordering::SeqCst), 0);
    arbiter.stop();
}

#[actix_rt::test]
async fn a_resync_brings_the_watches_in_line_with_the_registry() {
    use crate::registry::{FeedItem, Register, RegistryFeed, Remove};

    let (endpoint, registry, reader, _dir) = endpoint_and_registry().await;
    let frames = Arc::new(AtomicUsize::new(0));
    let sink = LinkSink { frames }.start();
    let settings = ObserverSettings {
        selection: Selection::parse(&["rt=temp"]).unwrap(),
        poll_interval: Duration::from_secs(3_600),
        only_changes: false,
        max_frames_per_s: 10,
        max_in_flight: 1,
        max_watched: 100,
        error_backoff_max: Duration::from_secs(600),
    };
    // Not subscribed: it learns about the registrations below only through the resync.
    let observer = start(
        settings,
        reader,
        endpoint.client(),
        sink.recipient(),
        None,
        Default::default(),
    );
    assert!(observer.send(WatchedDevices).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for i in 0..3u16 {
        let registered = registry
            .send(Register {
                identity: None,
                ep: EndpointName::new(format!("dev{i}")).unwrap(),
                d: None,
                base: Some(format!("coap://127.0.0.1:{}", 9_000 + i)),
                lifetime_s: 3_600,
                attrs: Vec::new(),
                links: vec![Link::new("/t").with("rt", Some("temp"))],
                source: SocketAddr::from(([127, 0, 0, 1], 9_000 + i)),
            })
            .await
            .unwrap()
            .unwrap();
        ids.push(registered.registration.id);
    }
    ids.sort();
    observer.do_send(RegistryFeed::unbounded(FeedItem::Resync { dropped: 3 }));
    assert_eq!(observer.send(WatchedDevices).await.unwrap(), ids);

    registry
        .send(Remove::by_gateway(ids[1]))
        .await
        .unwrap()
        .unwrap();
    observer.do_send(RegistryFeed::unbounded(FeedItem::Resync { dropped: 1 }));
    assert_eq!(
        observer.send(WatchedDevices).await.unwrap(),
        vec![ids[0], ids[2]],
        "a removed registration's watch is stopped"
    );
}
