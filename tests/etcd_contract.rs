//! What the etcd registry backend (issue 22, `docs/ha-etcd.md`) relies on, checked against the
//! etcd we deploy with (Debian's 3.4) through the client we build on (`etcd-client`), on a
//! three-member cluster this test starts on loopback: nested transactions decided by their own
//! compares (one per registration in a group commit), a batch never naming a key twice, leases
//! that take a replica's member key with them, watches that replay from a revision and report
//! compaction, and acknowledged writes surviving a SIGKILL of the Raft leader.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use etcd_client::{
    Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
    WatchStream,
};

/// A defect bound for anything to happen on a loaded 2-core box, not a measurement.
const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> Option<EtcdCluster> {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        return None;
    }
    Some(EtcdCluster::start(3))
}

async fn connect(cluster: &EtcdCluster) -> Client {
    Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect to the test cluster")
}

/// "Register `name` as `id` unless the name is taken": the shape of one registration in a
/// group commit (section 4 of the design).
fn claim(name: &str, id: &str) -> Txn {
    Txn::new()
        .when([Compare::create_revision(name, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(name, id, None)])
        .or_else([TxnOp::get(name, None)])
}

fn inner_outcomes(ops: &[TxnOpResponse]) -> Vec<bool> {
    ops.iter()
        .filter_map(|op| match op {
            TxnOpResponse::Txn(t) => Some(t.succeeded()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn nested_transactions_are_decided_one_by_one_and_a_key_may_appear_once() {
    let Some(cluster) = cluster() else { return };
    let mut client = connect(&cluster).await;
    client.put("t/names/taken", "r0", None).await.expect("put");

    let batch = Txn::new().and_then([
        TxnOp::txn(claim("t/names/new", "r1")),
        TxnOp::txn(claim("t/names/taken", "r2")),
    ]);
    let resp = client.txn(batch).await.expect("batch");
    assert!(resp.succeeded());
    assert_eq!(
        inner_outcomes(resp.op_responses().as_slice()),
        vec![true, false],
        "each registration is decided by its own compare"
    );
    let taken = client.get("t/names/taken", None).await.expect("get");
    assert_eq!(taken.kvs()[0].value(), b"r0", "the first claim stays");

    // Two registrations of one name in one batch: etcd refuses the whole batch, so the
    // batcher must hold the second for the next one (design, section 4).
    let twice = Txn::new().and_then([
        TxnOp::txn(claim("t/names/dup", "r3")),
        TxnOp::txn(claim("t/names/dup", "r4")),
    ]);
    let err = client.txn(twice).await.expect_err("a key twice in a txn");
    assert!(
        err.to_string().contains("duplicate key"),
        "unexpected error: {err}"
    );
    assert!(
        cluster.keys("t/names/dup").is_empty(),
        "nothing of it applied"
    );
}

#[tokio::test]
async fn a_lapsed_lease_takes_the_member_key_with_it() {
    let Some(cluster) = cluster() else { return };
    let mut client = connect(&cluster).await;
    let lease = client.lease_grant(2, None).await.expect("grant");
    client
        .put(
            "t/members/a",
            "alive",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .expect("put");
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease.id())
        .await
        .expect("keepalive");
    // Kept alive past its TTL, the key stays.
    let kept_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < kept_until {
        keeper.keep_alive().await.expect("keepalive");
        let answer = answers.message().await.expect("answer").expect("open");
        assert!(answer.ttl() > 0, "lease still granted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(cluster.keys("t/members/"), vec!["t/members/a"]);
    // Left alone (a replica that died), it lapses and takes the key.
    drop(keeper);
    drop(answers);
    let deadline = Instant::now() + WAIT;
    while !cluster.keys("t/members/").is_empty() {
        assert!(Instant::now() < deadline, "member key outlived its lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn watch_from(client: &mut Client, prefix: &str, revision: i64) -> WatchStream {
    client
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision),
            ),
        )
        .await
        .expect("watch")
}

async fn next_answer(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("watch answer")
        .expect("open")
}

#[tokio::test]
async fn a_watch_replays_from_a_revision_and_reports_compaction() {
    let Some(cluster) = cluster() else { return };
    let mut client = connect(&cluster).await;
    let first = client.put("t/reg/1", "a", None).await.expect("put");
    let from = first.header().expect("header").revision();
    client.put("t/reg/2", "b", None).await.expect("put");
    client.delete("t/reg/1", None).await.expect("delete");

    let mut stream = watch_from(&mut client, "t/reg/", from).await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "replay incomplete: {seen:?}");
        let resp = next_answer(&mut stream).await;
        for event in resp.events() {
            let kv = event.kv().expect("kv");
            seen.push((kv.key_str().expect("utf8").to_owned(), kv.mod_revision()));
        }
    }
    let revisions: Vec<i64> = seen.iter().map(|(_, r)| *r).collect();
    assert_eq!(revisions, vec![from, from + 1, from + 2], "{seen:?}");

    // After a compaction past `from`, a watch from `from` cannot resume: it is cancelled with
    // the compaction revision, and the index must be re-listed (design, section 5).
    let now = client.get("t/reg/2", None).await.expect("get");
    let head = now.header().expect("header").revision();
    client.compact(head, None).await.expect("compact");
    let mut stale = watch_from(&mut client, "t/reg/", from).await;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no cancellation");
        let resp = next_answer(&mut stale).await;
        if resp.canceled() {
            assert_eq!(resp.compact_revision(), head);
            break;
        }
        assert!(
            resp.events().is_empty(),
            "no event from a compacted revision"
        );
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_a_sigkill_of_the_raft_leader() {
    let Some(mut cluster) = cluster() else { return };
    let mut client = connect(&cluster).await;
    let mut acknowledged = BTreeSet::new();
    let mut killed = None;
    let mut failures = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u32;
    while acknowledged.len() < 400 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after killing the leader ({} acknowledged, {failures} failures):\n{}",
            acknowledged.len(),
            cluster.logs()
        );
        if acknowledged.len() == 100 && killed.is_none() {
            let leader = cluster.leader().expect("a leader");
            cluster.kill(leader);
            killed = Some(leader);
        }
        let key = format!("t/ack/{i:05}");
        i += 1;
        match tokio::time::timeout(Duration::from_secs(2), client.put(key.as_str(), "v", None))
            .await
        {
            Ok(Ok(_)) => {
                acknowledged.insert(key);
            }
            // Unanswered or refused: it may or may not have committed; only acknowledged
            // writes are promised. Reconnect to the members that are left.
            _ => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(c) = Client::connect(cluster.endpoints(), None).await {
                    client = c;
                }
            }
        }
    }
    assert!(killed.is_some());
    let stored: BTreeSet<String> = cluster.keys("t/ack/").into_iter().collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not in etcd: {lost:?}");
}
