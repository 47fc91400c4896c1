//! Batch listeners as a user sees them: batches of one partition in offset order, bounded by
//! `max-poll-records`; partial acknowledgment; a failure at an index commits what came before,
//! retries and recovers the failing record and delivers the rest again; an undecodable record is
//! dead-lettered and the batch delivered without it; a failed batch is delivered again whole.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{produce_spread, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;

/// Waits until `recorder` holds at least `count` entries.
async fn wait_for<T: Clone>(recorder: &Recorder<T>, count: usize) {
    let deadline = Instant::now() + PATIENCE;
    while recorder.len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One handler call: the values it got, with their partitions and offsets.
type Calls = Recorder<Vec<(String, i32, i64)>>;

fn call(batch: &[kafka_runtime::BatchRecord<String>]) -> Vec<(String, i32, i64)> {
    batch
        .iter()
        .map(|r| (r.payload.clone(), r.metadata.partition, r.metadata.offset))
        .collect()
}

// --- batches: one partition each, in offset order, bounded by max-poll-records ------------------

#[kafka_listener(
    id = "batches",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn batches(Batch(records): Batch<String>, State(calls): State<Calls>) {
    calls.push(call(&records));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_one_partitions_records_in_order_up_to_max_poll_records() {
    let cluster = Cluster::start();
    let topic = cluster.topic("batches", 3);
    let group = unique("batches");
    produce_spread(cluster.bootstrap(), &topic, 3, 600);
    let calls = Calls::default();
    let extra = "[kafka.consumer]\nmax-poll-records = 50\n";
    let app = cluster
        .start_listener(extra, "batches", (&topic, &group), calls.clone())
        .await;
    let deadline = Instant::now() + PATIENCE;
    while calls.snapshot().iter().map(Vec::len).sum::<usize>() < 600 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = calls.snapshot();
    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for batch in &calls {
        assert!(
            !batch.is_empty() && batch.len() <= 50,
            "{} records",
            batch.len()
        );
        let partition = batch[0].1;
        assert!(
            batch.iter().all(|(_, p, _)| *p == partition),
            "one partition per batch"
        );
        let offsets: Vec<i64> = batch.iter().map(|(_, _, offset)| *offset).collect();
        assert!(
            offsets.windows(2).all(|pair| pair[0] + 1 == pair[1]),
            "in offset order: {offsets:?}"
        );
        seen.entry(partition).or_default().extend(offsets);
    }
    assert_eq!(seen.len(), 3);
    for (partition, offsets) in &seen {
        assert_eq!(
            *offsets,
            (0..200).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
    assert!(
        calls.len() < 600,
        "records come in batches: {} calls",
        calls.len()
    );
    assert_eq!(
        cluster
            .wait_committed(&group, &topic, &[Some(200), Some(200), Some(200)])
            .await,
        [Some(200), Some(200), Some(200)]
    );
    app.shutdown().await;
}

// --- manual acknowledgment of part of a batch ---------------------------------------------------

#[kafka_listener(
    id = "partly",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn partly(Batch(records): Batch<String>, ack: BatchAck, State(calls): State<Calls>) {
    calls.push(call(&records));
    ack.acknowledge_up_to(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_up_to_an_index_commits_exactly_that_prefix() {
    let cluster = Cluster::start();
    let topic = cluster.topic("partly", 1);
    let group = unique("partly");
    produce_spread(cluster.bootstrap(), &topic, 1, 20);
    let calls = Calls::default();
    let app = cluster
        .start_listener("", "partly", (&topic, &group), calls.clone())
        .await;
    wait_for(&calls, 1).await;
    let first = calls.snapshot()[0].clone();
    assert_eq!(first[0].2, 0, "the first batch starts at offset 0");
    assert!(first.len() >= 5, "{first:?}");
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(5)]).await,
        [Some(5)]
    );
    // Records 5.. of that batch are not acknowledged: nothing commits past them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cluster.committed(&group, &topic, 1), [Some(5)]);
    app.shutdown().await;
}

// --- a failure at an index ---------------------------------------------------------------------

/// Fails at `v3` while it has been seen fewer than `FAILURES` times (retryable), or always with
/// a non-retryable error when the state says so.
#[kafka_listener(
    id = "at_index",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn at_index(
    Batch(records): Batch<String>,
    State((calls, retryable)): State<(Calls, bool)>,
) -> Result<(), BatchError> {
    let seen_before = calls
        .snapshot()
        .iter()
        .flatten()
        .filter(|(value, _, _)| value == "v3")
        .count();
    calls.push(call(&records));
    match records.iter().position(|r| r.payload == "v3") {
        Some(index) if !retryable => Err(BatchError::at(
            index,
            HandlerError::non_retryable("v3 breaks a rule"),
        )),
        Some(index) if seen_before < 2 => {
            Err(BatchError::at(index, HandlerError::new("v3 failed")))
        }
        _ => Ok(()),
    }
}

/// How many times each value was delivered.
fn deliveries(calls: &Calls) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (value, _, _) in calls.snapshot().into_iter().flatten() {
        *counts.entry(value).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_an_index_commits_the_records_before_it_and_retries_only_from_it() {
    let cluster = Cluster::start();
    let topic = cluster.topic("atindex", 1);
    let group = unique("atindex");
    produce_spread(cluster.bootstrap(), &topic, 1, 10);
    let calls = Calls::default();
    let state = (calls.clone(), true);
    let app = cluster
        .start_listener("", "at_index", (&topic, &group), state)
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(10)]).await,
        [Some(10)]
    );
    let counts = deliveries(&calls);
    assert_eq!(
        counts["v3"], 3,
        "two failed deliveries, then handled: {counts:?}"
    );
    for before in ["v0", "v1", "v2"] {
        assert_eq!(counts[before], 1, "{before} was committed before v3 failed");
    }
    for call in calls.snapshot().iter().skip(1) {
        assert_eq!(
            call[0].0, "v3",
            "each redelivery starts at the failing record: {call:?}"
        );
    }
    app.shutdown().await;
}

const DEAD_LETTER: &str = "[kafka.listener.error-handler]\nrecoverer = \"dead-letter\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_in_a_batch_is_dead_lettered_and_the_rest_handled() {
    let cluster = Cluster::start();
    let topic = cluster.topic("atindexdlt", 1);
    let group = unique("atindexdlt");
    produce_spread(cluster.bootstrap(), &topic, 1, 10);
    let calls = Calls::default();
    let state = (calls.clone(), false);
    let app = cluster
        .start_listener(DEAD_LETTER, "at_index", (&topic, &group), state)
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(10)]).await,
        [Some(10)]
    );
    let dead = cluster
        .kit()
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    assert_eq!(dead[0].record.value.as_deref(), Some(&b"v3"[..]));
    assert_eq!(dead[0].original_offset, Some(3));
    assert_eq!(
        dead[0].exception_message.as_deref(),
        Some("v3 breaks a rule")
    );
    let counts = deliveries(&calls);
    assert_eq!(counts["v3"], 1, "not retryable: delivered once: {counts:?}");
    for value in ["v4", "v5", "v9"] {
        assert!(counts[value] >= 1, "{value} handled after v3: {counts:?}");
    }
    app.shutdown().await;
}

// --- an undecodable record inside a batch -------------------------------------------------------

#[derive(Debug, Clone, serde::Deserialize)]
struct Event {
    n: u32,
}

#[kafka_listener(
    id = "typed",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn typed(Batch(records): Batch<Event>, State(seen): State<Recorder<(u32, i64)>>) {
    for record in &records {
        seen.push((record.payload.n, record.metadata.offset));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_is_dead_lettered_and_its_batch_delivered_without_it() {
    let cluster = Cluster::start();
    let topic = cluster.topic("poisonbatch", 1);
    let group = unique("poisonbatch");
    let values: Vec<(String, String)> = (0..10)
        .map(|n| {
            let value = if n == 4 {
                "not json".to_owned()
            } else {
                format!(r#"{{"n":{n}}}"#)
            };
            (format!("k{n}"), value)
        })
        .collect();
    common::produce_all(cluster.bootstrap(), &topic, values);
    let seen = Recorder::<(u32, i64)>::default();
    let app = cluster
        .start_listener(DEAD_LETTER, "typed", (&topic, &group), seen.clone())
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(10)]).await,
        [Some(10)]
    );
    let mut handled = seen.snapshot();
    handled.sort_unstable();
    handled.dedup();
    let expected: Vec<(u32, i64)> = (0..10)
        .filter(|n| *n != 4)
        .map(|n| (n, i64::from(n)))
        .collect();
    assert_eq!(handled, expected, "every record but the poison one");
    let dead = cluster
        .kit()
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    assert_eq!(dead[0].record.value.as_deref(), Some(&b"not json"[..]));
    assert_eq!(dead[0].record.key.as_deref(), Some(&b"k4"[..]));
    let message = dead[0].exception_message.as_deref().unwrap_or_default();
    assert!(message.contains("cannot decode"), "{message}");
    app.shutdown().await;
}

// --- a batch that fails as a whole ----------------------------------------------------------------

#[kafka_listener(
    id = "whole",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn whole(
    Batch(records): Batch<String>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(calls): State<Recorder<(u32, usize)>>,
) -> Result<(), BatchError> {
    calls.push((attempt, records.len()));
    if attempt < 3 {
        return Err(std::io::Error::other("the store is down").into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_whole_is_delivered_again_whole() {
    let cluster = Cluster::start();
    let topic = cluster.topic("wholebatch", 1);
    let group = unique("wholebatch");
    produce_spread(cluster.bootstrap(), &topic, 1, 10);
    let calls = Recorder::<(u32, usize)>::default();
    let app = cluster
        .start_listener("", "whole", (&topic, &group), calls.clone())
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(10)]).await,
        [Some(10)]
    );
    let calls = calls.snapshot();
    let attempts: Vec<u32> = calls.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts[..3], [1, 2, 3], "{calls:?}");
    assert!(calls[1].1 >= calls[0].1, "the whole batch again: {calls:?}");
    app.shutdown().await;
}

// --- configuration that cannot work is refused at startup ---------------------------------------

#[kafka_listener(
    id = "single",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn single(Payload(_value): Payload<String>) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_that_cannot_work_are_refused_at_startup() {
    let cluster = Cluster::start();
    let topic = cluster.topic("batchconfig", 1);
    let refused = |extra: &'static str, listener: &'static str| {
        let cluster = &cluster;
        let topic = &topic;
        async move {
            let started = cluster
                .application(extra)
                .with_listeners([listener])
                .with_property("topic", topic)
                .with_property("group", unique("batchconfig"))
                .with_state(Calls::default())
                .start()
                .await;
            match started {
                Ok(app) => {
                    app.shutdown().await;
                    panic!("{listener} started with {extra}");
                }
                Err(error) => error.to_string(),
            }
        }
    };
    let error = refused("[kafka.listener]\ntype = \"batch\"\n", "single").await;
    assert!(
        error.contains("single") && error.contains("listener.type is `batch`"),
        "{error}"
    );
    let error = refused("[kafka.retry.topic]\nenabled = true\n", "batches").await;
    assert!(
        error.contains("batches") && error.contains("retry topics are for record listeners"),
        "{error}"
    );
    let error = refused(
        "[kafka.listener]\nordering = \"key\"\n[kafka.retry.topic]\nenabled = true\n",
        "single",
    )
    .await;
    assert!(error.contains("retries in place"), "{error}");
}

// --- a nacked batch counts its deliveries --------------------------------------------------------

#[kafka_listener(
    id = "nacking",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn nacking(
    Batch(records): Batch<String>,
    ack: BatchAck,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(calls): State<Recorder<(u32, String)>>,
) {
    calls.push((attempt, records[0].payload.clone()));
    if attempt < 3 {
        ack.nack(0, Duration::ZERO);
    } else {
        ack.acknowledge();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_batch_is_delivered_again_with_its_attempt_counted() {
    let cluster = Cluster::start();
    let topic = cluster.topic("nackbatch", 1);
    let group = unique("nackbatch");
    produce_spread(cluster.bootstrap(), &topic, 1, 5);
    let calls = Recorder::<(u32, String)>::default();
    let app = cluster
        .start_listener("", "nacking", (&topic, &group), calls.clone())
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(5)]).await,
        [Some(5)]
    );
    let calls = calls.snapshot();
    assert_eq!(
        calls[..3],
        [
            (1, "v0".to_owned()),
            (2, "v0".to_owned()),
            (3, "v0".to_owned())
        ],
        "{calls:?}"
    );
    app.shutdown().await;
}
