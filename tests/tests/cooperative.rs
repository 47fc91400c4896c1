//! Cooperative rebalancing (`partition.assignment.strategy = cooperative-sticky`): a member
//! joining or leaving moves only the partitions that change hands; the others keep flowing
//! through the rebalance.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{unique, Cluster, Recorder};
use kafka_runtime::prelude::*;
use kafka_runtime::{ConsumerEvent, ListenerEvents};

const PARTITIONS: i32 = 6;

/// Which member (application) a record or an event belongs to.
#[derive(Clone, Copy)]
struct Member(&'static str);

/// (member, partition, value, when).
type Handled = (&'static str, i32, String, Instant);

#[kafka_listener(
    id = "sticky",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn sticky(
    Payload(value): Payload<String>,
    meta: Metadata,
    State(member): State<Member>,
    State(seen): State<Recorder<Handled>>,
) {
    seen.push((member.0, meta.partition, value, Instant::now()));
}

/// (member, assigned or revoked, partitions, when).
type Rebalance = (&'static str, bool, BTreeSet<i32>, Instant);

#[derive(Clone, Default)]
struct Rebalances(Arc<Mutex<Vec<Rebalance>>>);

struct Told(&'static str, Rebalances);

impl Rebalances {
    /// A member's assignments or revocations, leaving out the empty ones (a cooperative
    /// rebalance tells each member of what it gets and gives, which may be nothing).
    fn of(&self, member: &str, assigned: bool) -> Vec<(BTreeSet<i32>, Instant)> {
        let all = self.0.lock().expect("rebalances").clone();
        all.into_iter()
            .filter(|(m, a, partitions, _)| {
                *m == member && *a == assigned && !partitions.is_empty()
            })
            .map(|(_, _, partitions, at)| (partitions, at))
            .collect()
    }

    async fn wait(&self, member: &str, assigned: bool, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.of(member, assigned).len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.of(member, assigned).len() >= count,
            "{member}: {count} events expected: {:?}",
            self.0.lock().expect("rebalances")
        );
    }
}

impl ListenerEvents for Told {
    fn partitions_assigned(&self, _: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let set = partitions.iter().map(|(_, p)| *p).collect();
        let entry = (self.0, true, set, Instant::now());
        self.1 .0.lock().expect("rebalances").push(entry);
    }

    fn partitions_revoked(&self, _: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let set = partitions.iter().map(|(_, p)| *p).collect();
        let entry = (self.0, false, set, Instant::now());
        self.1 .0.lock().expect("rebalances").push(entry);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cooperative_sticky_only_the_moving_partitions_stop() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("sticky", PARTITIONS), unique("sticky"));
    let seen = Recorder::<Handled>::default();
    let rebalances = Rebalances::default();
    let start = |name: &'static str| {
        cluster
            .application(
                "[kafka.consumer.properties]\n\
                 \"partition.assignment.strategy\" = \"cooperative-sticky\"\n\
                 \"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n",
            )
            .with_listeners(["sticky"])
            .with_property("topic", &topic)
            .with_property("group", &group)
            .with_state(Member(name))
            .with_state(seen.clone())
            .with_events(Told(name, rebalances.clone()))
            .start()
    };
    let a = start("a").await.expect("a starts");
    rebalances.wait("a", true, 1).await;

    // Records keep coming, to every partition, all along.
    let producing = {
        let (bootstrap, topic) = (cluster.bootstrap().to_owned(), topic.clone());
        std::thread::spawn(move || {
            let producer = common::producer(&bootstrap);
            let mut sent = 0;
            let until = Instant::now() + Duration::from_secs(25);
            while Instant::now() < until {
                for partition in 0..PARTITIONS {
                    let value = format!("v{sent}");
                    let record = rdkafka::producer::BaseRecord::<(), _>::to(&topic)
                        .payload(&value)
                        .partition(partition);
                    common::send_waiting(&producer, record);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))
                .expect("flushed");
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // b joins: a gives up only what b gets, and keeps reading the rest meanwhile.
    let joined = Instant::now();
    let b = start("b").await.expect("b starts");
    rebalances.wait("b", true, 1).await;
    let b_got = rebalances.of("b", true)[0].0.clone();
    let b_assigned_at = rebalances.of("b", true)[0].1;
    let a_gave: BTreeSet<i32> = rebalances
        .of("a", false)
        .into_iter()
        .flat_map(|(partitions, _)| partitions)
        .collect();
    assert_eq!(a_gave, b_got, "a revoked exactly the partitions b got");
    assert!(
        !b_got.is_empty() && b_got.len() < PARTITIONS as usize,
        "{b_got:?}"
    );
    let kept: BTreeSet<i32> = (0..PARTITIONS).filter(|p| !b_got.contains(p)).collect();
    let during: Vec<Handled> = seen
        .snapshot()
        .into_iter()
        .filter(|(member, partition, _, at)| {
            *member == "a" && kept.contains(partition) && *at > joined && *at < b_assigned_at
        })
        .collect();
    eprintln!(
        "b joined: rebalance took {:?}; b got {b_got:?}; a handled {} records of the partitions \
         it kept meanwhile",
        b_assigned_at - joined,
        during.len()
    );
    assert!(
        !during.is_empty(),
        "the partitions a kept flowed during the rebalance"
    );

    // b leaves: its partitions come back to a, and a gives up none of its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let revoked_before = rebalances.of("a", false).len();
    assert!(b.shutdown().await.is_clean());
    rebalances.wait("a", true, 2).await;
    let a_got_back = rebalances.of("a", true)[1].0.clone();
    assert_eq!(
        a_got_back, b_got,
        "a got b's partitions back, incrementally"
    );
    assert_eq!(
        rebalances.of("a", false).len(),
        revoked_before,
        "a revoked nothing"
    );

    let sent = producing.join().expect("producer");
    let deadline = Instant::now() + Duration::from_secs(60);
    let distinct = || -> usize {
        let values: HashSet<String> = seen.snapshot().into_iter().map(|(_, _, v, _)| v).collect();
        values.len()
    };
    while distinct() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(distinct(), sent, "every record handled");
    assert!(a.shutdown().await.is_clean());
    let committed = cluster.committed_total(&group, &topic, PARTITIONS);
    assert_eq!(
        committed,
        i64::try_from(sent).expect("count"),
        "all committed"
    );
}
