//! End to end through `#[kafka_listener]`: extraction, acknowledgment, commits, redelivery,
//! concurrency and restarts, against a real Kafka-protocol cluster.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{unique, Cluster, Recorder};
use kafka_runtime::prelude::*;
use kafka_runtime::{KafkaApplication, RunningApplication};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
}

fn event(n: u32) -> UserEvent {
    UserEvent {
        event_type: "user_created".into(),
        user_id: n.to_string(),
    }
}

async fn start(
    cluster: &Cluster,
    extra: &str,
    listener: &str,
    topic: &str,
    group: &str,
    app: impl FnOnce(KafkaApplication) -> KafkaApplication,
) -> RunningApplication {
    app(cluster.application(extra))
        .with_listeners([listener])
        .with_property("topic", topic)
        .with_property("group", group)
        .start()
        .await
        .expect("application starts")
}

// --- payload, key, headers, metadata; acknowledge commits ------------------------------------

#[derive(Debug, Clone)]
struct Received {
    event: UserEvent,
    key: String,
    correlation_id: Option<String>,
    metadata: Metadata,
}

#[kafka_listener(
    id = "intact",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn intact(
    Payload(event): Payload<UserEvent>,
    Key(key): Key<String>,
    headers: Headers,
    metadata: Metadata,
    ack: Ack,
    State(seen): State<Recorder<Received>>,
) -> Result<(), HandlerError> {
    seen.push(Received {
        event,
        key,
        correlation_id: headers.get_str("correlation_id").map(str::to_owned),
        metadata,
    });
    ack.acknowledge();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_arrives_intact_and_acknowledge_commits_it() {
    let cluster = Cluster::start();
    let topic = cluster.topic("intact", 3);
    let group = unique("intact");
    let seen = Recorder::<Received>::default();
    let app = start(&cluster, "", "intact", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;

    let sent = app
        .template()
        .record(&topic)
        .key("user-123")
        .header("correlation_id", "abc-123")
        .partition(2)
        .timestamp(1_700_000_000_000)
        .send(&event(123))
        .await
        .expect("delivered");

    let received = seen.wait_for(1).await.remove(0);
    assert_eq!(received.event, event(123));
    assert_eq!(received.key, "user-123");
    assert_eq!(received.correlation_id.as_deref(), Some("abc-123"));
    assert_eq!(&*received.metadata.topic, topic);
    assert_eq!(received.metadata.partition, 2);
    assert_eq!(received.metadata.offset, sent.offset);
    assert_eq!(received.metadata.timestamp, Some(1_700_000_000_000));
    let expected = [None, None, Some(sent.offset + 1)];
    assert_eq!(
        cluster.wait_committed(&group, &topic, &expected).await,
        expected
    );
    app.shutdown().await;
}

// --- a dropped Ack is a nack: redelivered, not committed --------------------------------------

#[kafka_listener(
    id = "drops",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn drops(
    Payload(value): Payload<String>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    metadata: Metadata,
    ack: Ack,
    State(seen): State<Recorder<(String, u32, i64)>>,
) {
    seen.push((value, attempt, metadata.offset));
    if attempt > 1 {
        ack.acknowledge();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_ack_redelivers_the_record_and_commits_nothing_until_acknowledged() {
    let cluster = Cluster::start();
    let topic = cluster.topic("drops", 1);
    let group = unique("drops");
    let seen = Recorder::<(String, u32, i64)>::default();
    let app = start(&cluster, "", "drops", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;

    app.template()
        .send(&topic, "k", "first")
        .await
        .expect("delivered");
    app.template()
        .send(&topic, "k", "second")
        .await
        .expect("delivered");

    // Each record's Ack is dropped on its first delivery. Like Spring's nack, that discards the
    // records handed out after it and seeks back, so each is delivered twice, in offset order.
    let expected = vec![
        ("first".to_owned(), 1, 0),
        ("first".to_owned(), 2, 0),
        ("second".to_owned(), 1, 1),
        ("second".to_owned(), 2, 1),
    ];
    assert_eq!(seen.wait_for(4).await, expected);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    app.shutdown().await;
}

// --- nack(delay) ---------------------------------------------------------------------------------

#[kafka_listener(
    id = "nacks",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn nacks(
    DeliveryAttempt(attempt): DeliveryAttempt,
    ack: Ack,
    State(seen): State<Recorder<(u32, Instant)>>,
) {
    seen.push((attempt, Instant::now()));
    if attempt == 1 {
        ack.nack(Duration::from_millis(400));
    } else {
        ack.acknowledge();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_redelivers_after_the_delay() {
    let cluster = Cluster::start();
    let topic = cluster.topic("nacks", 1);
    let group = unique("nacks");
    let seen = Recorder::<(u32, Instant)>::default();
    let app = start(&cluster, "", "nacks", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "x")
        .await
        .expect("delivered");
    let seen = seen.wait_for(2).await;
    assert_eq!((seen[0].0, seen[1].0), (1, 2));
    let waited = seen[1].1 - seen[0].1;
    assert!(
        waited >= Duration::from_millis(400),
        "redelivered after {waited:?}"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    app.shutdown().await;
}

// --- out-of-order acknowledgments commit only the contiguous prefix ------------------------------

#[kafka_listener(
    id = "parks",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn parks(ack: Ack, State(parked): State<Recorder<Ack>>) {
    parked.push(ack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    let cluster = Cluster::start();
    let topic = cluster.topic("parks", 1);
    let group = unique("parks");
    let parked = Recorder::<Ack>::default();
    let app = start(&cluster, "", "parks", &topic, &group, |a| {
        a.with_state(parked.clone())
    })
    .await;
    let results = app
        .template()
        .send_batch(&topic, (0..4).map(|n| ("k", n)))
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    parked.wait_len(4).await;
    let mut acks: BTreeMap<i64, Ack> = parked
        .take_all()
        .into_iter()
        .map(|a| (a.offset(), a))
        .collect();
    assert_eq!(acks.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let mut ack = |offset| acks.remove(&offset).expect("parked ack").acknowledge();

    ack(0);
    ack(2);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [Some(1)],
        "2 must wait for 1"
    );
    ack(1);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(3)]).await,
        [Some(3)]
    );
    ack(3);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(4)]).await,
        [Some(4)]
    );
    app.shutdown().await;
}

// --- manual_immediate commits as soon as acknowledge() is called, which never blocks -------------

#[kafka_listener(
    id = "immediate",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual_immediate",
    auto_startup = false
)]
async fn immediate(ack: Ack, State(parked): State<Recorder<Ack>>) {
    parked.push(ack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_immediate_commits_at_once_and_acknowledge_does_not_wait_for_the_broker() {
    let cluster = Cluster::start();
    let topic = cluster.topic("immediate", 1);
    let group = unique("immediate");
    let parked = Recorder::<Ack>::default();
    let app = start(&cluster, "", "immediate", &topic, &group, |a| {
        a.with_state(parked.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "x")
        .await
        .expect("delivered");
    parked.wait_len(1).await;
    let ack = parked.take_all().remove(0);
    let started = Instant::now();
    ack.acknowledge();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "acknowledge() took {:?}",
        started.elapsed()
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)],
        "committed without another record or the end of an ack-time"
    );
    app.shutdown().await;
}

// --- record, batch and count ack modes ---------------------------------------------------------

#[kafka_listener(
    id = "mode_record",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn mode_record(metadata: Metadata, State(seen): State<Recorder<i64>>) {
    seen.push(metadata.offset);
}

#[kafka_listener(
    id = "mode_batch",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "batch",
    auto_startup = false
)]
async fn mode_batch(metadata: Metadata, State(seen): State<Recorder<i64>>) {
    seen.push(metadata.offset);
}

#[kafka_listener(
    id = "mode_count",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "count",
    auto_startup = false
)]
async fn mode_count(metadata: Metadata, State(seen): State<Recorder<i64>>) {
    seen.push(metadata.offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_and_batch_modes_commit_every_handled_record() {
    for listener in ["mode_record", "mode_batch"] {
        let cluster = Cluster::start();
        let topic = cluster.topic(listener, 2);
        let group = unique(listener);
        let seen = Recorder::<i64>::default();
        let app = start(&cluster, "", listener, &topic, &group, |a| {
            a.with_state(seen.clone())
        })
        .await;
        let items = (0..20u32).map(|n| (format!("key-{n}"), n));
        let results = app.template().send_batch(&topic, items).await;
        let mut ends = [0i64; 2];
        for sent in results.into_iter().map(|r| r.expect("delivered")) {
            let end = &mut ends[usize::try_from(sent.partition).expect("partition")];
            *end = (*end).max(sent.offset + 1);
        }
        seen.wait_for(20).await;
        let expected: Vec<Option<i64>> = ends.iter().map(|&end| (end > 0).then_some(end)).collect();
        assert_eq!(
            cluster.wait_committed(&group, &topic, &expected).await,
            expected,
            "{listener}"
        );
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_mode_commits_once_ack_count_records_were_handled() {
    let cluster = Cluster::start();
    let topic = cluster.topic("count", 1);
    let group = unique("count");
    let seen = Recorder::<i64>::default();
    let extra = "[kafka.listener]\nack-count = 3\nack-time = \"1h\"\n";
    let app = start(&cluster, extra, "mode_count", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    for n in 0..2 {
        app.template()
            .send_value(&topic, &n)
            .await
            .expect("delivered");
    }
    seen.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [None],
        "2 of 3 records: no commit yet"
    );
    app.template()
        .send_value(&topic, &2)
        .await
        .expect("delivered");
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(3)]).await,
        [Some(3)]
    );
    app.shutdown().await;
}

// --- handler errors and panics are retried; the container survives --------------------------------

#[kafka_listener(
    id = "flaky",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn flaky(
    Payload(value): Payload<String>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(seen): State<Recorder<(String, u32)>>,
) -> Result<(), std::io::Error> {
    seen.push((value.clone(), attempt));
    match (value.as_str(), attempt) {
        ("flaky", 1) => Err(std::io::Error::other("boom")),
        ("flaky", 2) => panic!("handler panicked"),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_and_panics_are_redelivered_and_the_container_survives() {
    let cluster = Cluster::start();
    let topic = cluster.topic("flaky", 1);
    let group = unique("flaky");
    let seen = Recorder::default();
    let app = start(&cluster, "", "flaky", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "flaky")
        .await
        .expect("delivered");
    app.template()
        .send_value(&topic, "fine")
        .await
        .expect("delivered");
    let seen_now = seen.wait_for(4).await;
    let flaky: Vec<u32> = seen_now
        .iter()
        .filter(|(v, _)| v == "flaky")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(flaky, vec![1, 2, 3]);
    assert_eq!(seen_now.last(), Some(&("fine".to_owned(), 1)));
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    app.shutdown().await;
}

// --- an undecodable payload is rejected, logged and skipped -------------------------------------

#[kafka_listener(
    id = "typed",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn typed(Payload(event): Payload<UserEvent>, State(seen): State<Recorder<UserEvent>>) {
    seen.push(event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payload_is_skipped_and_later_records_flow() {
    let cluster = Cluster::start();
    let topic = cluster.topic("typed", 1);
    let group = unique("typed");
    let seen = Recorder::<UserEvent>::default();
    let app = start(&cluster, "", "typed", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "not json")
        .await
        .expect("delivered");
    app.template()
        .send_value(&topic, &event(7))
        .await
        .expect("delivered");
    assert_eq!(seen.wait_for(1).await, vec![event(7)]);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    app.shutdown().await;
}

// --- concurrency: group members split the partitions; per-key order holds ---------------------

#[kafka_listener(
    id = "concurrent",
    topics = "${topic}",
    group = "${group}",
    concurrency = 3,
    ack_mode = "record",
    auto_startup = false
)]
async fn concurrent(
    Key(key): Key<String>,
    Payload(seq): Payload<u32>,
    State(seen): State<Recorder<(String, u32)>>,
) {
    seen.push((key, seq));
}

/// Partitions per consumer of `listener`, sorted.
fn split(app: &RunningApplication, listener: &str) -> Vec<usize> {
    let mut counts: Vec<usize> = app
        .assignments()
        .get(listener)
        .map(|consumers| consumers.values().map(Vec::len).collect())
        .unwrap_or_default();
    counts.sort_unstable();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_three_splits_six_partitions_and_keeps_per_key_order() {
    let cluster = Cluster::start();
    let topic = cluster.topic("concurrent", 6);
    let group = unique("concurrent");
    let seen = Recorder::default();
    let app = start(&cluster, "", "concurrent", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;

    // Three members joining at once can take the mock cluster several rebalances (seen once in
    // CI: no partition assigned after 20 s under the load of a whole suite).
    let deadline = Instant::now() + 3 * common::PATIENCE;
    while split(&app, "concurrent") != [2, 2, 2] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        split(&app, "concurrent"),
        [2, 2, 2],
        "3 members with 2 partitions each"
    );

    let keys: Vec<String> = (0..12).map(|k| format!("user-{k}")).collect();
    let items = (0..100u32).flat_map(|seq| keys.iter().map(move |k| (k.clone(), seq)));
    let results = app.template().send_batch(&topic, items).await;
    assert!(results.iter().all(Result::is_ok));

    let seen = seen.wait_for(1200).await;
    let mut per_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (key, seq) in seen {
        per_key.entry(key).or_default().push(seq);
    }
    for (key, seqs) in per_key {
        assert_eq!(seqs, (0..100).collect::<Vec<_>>(), "order of {key}");
    }
    app.shutdown().await;
}

// --- a slow partition does not stall the others ---------------------------------------------------

#[kafka_listener(
    id = "slow_partition",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn slow_partition(metadata: Metadata, State(seen): State<Recorder<(i32, Instant)>>) {
    if metadata.partition == 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    seen.push((metadata.partition, Instant::now()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_partition_does_not_stall_the_others() {
    let cluster = Cluster::start();
    let topic = cluster.topic("slow", 2);
    let group = unique("slow");
    let seen = Recorder::default();
    let app = start(&cluster, "", "slow_partition", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .record(&topic)
        .partition(0)
        .send("slow")
        .await
        .expect("delivered");
    for n in 0..5 {
        app.template()
            .record(&topic)
            .partition(1)
            .send(&n)
            .await
            .expect("delivered");
    }
    let seen = seen.wait_for(6).await;
    let fast: Vec<&(i32, Instant)> = seen.iter().filter(|(p, _)| *p == 1).collect();
    assert_eq!(fast.len(), 5);
    let (slow_partition, slow_done) = *seen.last().expect("six records");
    assert_eq!(slow_partition, 0, "the slow record finishes last");
    assert!(
        fast.iter()
            .all(|(_, at)| slow_done - *at > Duration::from_secs(1)),
        "partition 1 waited for partition 0"
    );
    app.shutdown().await;
}

// --- max-in-flight pauses the partition; nothing is lost -----------------------------------------

#[kafka_listener(
    id = "bounded",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn bounded(ack: Ack, State(parked): State<Recorder<Ack>>) {
    parked.push(ack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_pauses_the_partition_without_losing_records() {
    let cluster = Cluster::start();
    let topic = cluster.topic("bounded", 1);
    let group = unique("bounded");
    let parked = Recorder::<Ack>::default();
    let extra = "[kafka.listener]\nmax-in-flight = 4\n";
    let app = start(&cluster, extra, "bounded", &topic, &group, |a| {
        a.with_state(parked.clone())
    })
    .await;
    let results = app
        .template()
        .send_batch(&topic, (0..50u32).map(|n| ("k", n)))
        .await;
    assert!(results.iter().all(Result::is_ok));

    let mut offsets = Vec::new();
    let deadline = Instant::now() + common::PATIENCE;
    while offsets.len() < 50 && Instant::now() < deadline {
        parked.wait_len(1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let acks = parked.take_all();
        assert!(
            acks.len() <= 4,
            "{} records in flight, bound is 4",
            acks.len()
        );
        for ack in acks {
            offsets.push(ack.offset());
            ack.acknowledge();
        }
    }
    assert_eq!(
        offsets,
        (0..50).collect::<Vec<i64>>(),
        "every record once, in order"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(50)]).await,
        [Some(50)]
    );
    app.shutdown().await;
}

// --- a restarted application resumes at the committed offset -----------------------------------

#[derive(Clone, Default)]
struct Tail {
    ack_below: i64,
    seen: Recorder<i64>,
    parked: Recorder<Ack>,
}

/// librdkafka's mock cluster, unlike Kafka, makes a member that joins after another left wait out
/// the group's session timeout (45 s by default) before the assignment: keep it short here.
const MOCK_REJOIN: &str = "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n";

#[kafka_listener(
    id = "tail",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn tail(metadata: Metadata, ack: Ack, State(tail): State<Tail>) {
    tail.seen.push(metadata.offset);
    if metadata.offset < tail.ack_below {
        ack.acknowledge();
    } else {
        tail.parked.push(ack);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_committed_offset_and_redelivers_the_unacknowledged_tail() {
    let cluster = Cluster::start();
    let topic = cluster.topic("tail", 1);
    let group = unique("tail");

    let first = Tail {
        ack_below: 5,
        ..Tail::default()
    };
    let app = start(&cluster, MOCK_REJOIN, "tail", &topic, &group, |a| {
        a.with_state(first.clone())
    })
    .await;
    let results = app
        .template()
        .send_batch(&topic, (0..10u32).map(|n| ("k", n)))
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(first.seen.wait_for(10).await, (0..10).collect::<Vec<_>>());
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(5)]).await,
        [Some(5)]
    );
    app.shutdown().await;
    drop(first.parked.take_all());

    let second = Tail {
        ack_below: i64::MAX,
        ..Tail::default()
    };
    let app = start(&cluster, MOCK_REJOIN, "tail", &topic, &group, |a| {
        a.with_state(second.clone())
    })
    .await;
    assert_eq!(second.seen.wait_for(5).await, (5..10).collect::<Vec<_>>());
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(10)]).await,
        [Some(10)]
    );
    app.shutdown().await;
}

// --- manual mode: a failing handler drops its Ack; retries are bounded, then the record is skipped --

#[kafka_listener(
    id = "always_fails",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn always_fails(
    Payload(value): Payload<String>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    ack: Ack,
    State(seen): State<Recorder<(String, u32)>>,
) -> Result<(), HandlerError> {
    seen.push((value.clone(), attempt));
    if value == "poison" {
        return Err(HandlerError::new("cannot process"));
    }
    ack.acknowledge();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_manual_handler_is_retried_ten_times_then_skipped() {
    let cluster = Cluster::start();
    let topic = cluster.topic("poison", 1);
    let group = unique("poison");
    let seen = Recorder::<(String, u32)>::default();
    let app = start(&cluster, "", "always_fails", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "poison")
        .await
        .expect("delivered");
    app.template()
        .send_value(&topic, "fine")
        .await
        .expect("delivered");
    let seen = seen.wait_for(11).await;
    let poison: Vec<u32> = seen
        .iter()
        .filter(|(v, _)| v == "poison")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        poison,
        (1..=10).collect::<Vec<_>>(),
        "ten deliveries, Spring's default"
    );
    assert_eq!(seen.last(), Some(&("fine".to_owned(), 1)));
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    app.shutdown().await;
}

// --- graceful shutdown: in-flight handlers get shutdown-timeout, then their records are abandoned --

#[kafka_listener(
    id = "slow_shutdown",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn slow_shutdown(
    Payload(value): Payload<String>,
    ack: Ack,
    State(seen): State<Recorder<String>>,
) {
    seen.push(value.clone());
    if value == "slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    ack.acknowledge();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_acknowledged_and_reports_abandoned_records() {
    let cluster = Cluster::start();
    let topic = cluster.topic("shutdown", 1);
    let group = unique("shutdown");
    let seen = Recorder::<String>::default();
    let extra = "[kafka.listener]\nshutdown-timeout = \"1s\"\n";
    let app = start(&cluster, extra, "slow_shutdown", &topic, &group, |a| {
        a.with_state(seen.clone())
    })
    .await;
    app.template()
        .send_value(&topic, "fast")
        .await
        .expect("delivered");
    app.template()
        .send_value(&topic, "slow")
        .await
        .expect("delivered");
    seen.wait_for(2).await;
    let started = Instant::now();
    let report = app.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(!report.is_clean());
    assert_eq!(report.abandoned(), [format!("{topic}-0@1")]);
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [Some(1)],
        "the acknowledged record is committed"
    );
}

// --- the correlation id and trace context follow a record into what its handler sends ----------

#[derive(Clone)]
struct Relay(String);

#[kafka_listener(
    id = "relays",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn relays(
    Payload(value): Payload<String>,
    template: KafkaTemplate,
    State(Relay(out)): State<Relay>,
) -> Result<(), HandlerError> {
    template
        .send(&out, "k", &format!("relayed {value}"))
        .await?;
    template
        .record(&out)
        .header("correlation_id", "explicit")
        .send("explicit")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_id_and_traceparent_follow_the_record_into_what_the_handler_sends() {
    use rdkafka::message::{Headers as _, Message};
    let cluster = Cluster::start();
    let topic = cluster.topic("relay-in", 1);
    let out = cluster.topic("relay-out", 1);
    let group = unique("relay");
    let app = start(&cluster, "", "relays", &topic, &group, |a| {
        a.with_state(Relay(out.clone()))
    })
    .await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    app.template()
        .record(&topic)
        .header("correlation_id", "abc-123")
        .header("traceparent", traceparent)
        .header("unrelated", "x")
        .send("in")
        .await
        .expect("delivered");
    let relayed = common::read_topic(cluster.bootstrap(), &out, 2);
    assert_eq!(relayed.len(), 2);
    let headers = |message: &rdkafka::message::OwnedMessage| -> Vec<(String, String)> {
        message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        relayed[0].payload(),
        Some(&b"relayed in"[..]),
        "a String is sent raw"
    );
    assert_eq!(
        headers(&relayed[0]),
        vec![
            ("correlation_id".to_owned(), "abc-123".to_owned()),
            ("traceparent".to_owned(), traceparent.to_owned())
        ]
    );
    assert_eq!(
        headers(&relayed[1]),
        vec![
            ("correlation_id".to_owned(), "explicit".to_owned()),
            ("traceparent".to_owned(), traceparent.to_owned())
        ],
        "an explicit header wins"
    );
    app.shutdown().await;
}
