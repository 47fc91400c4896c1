//! The listener container's guarantees under the races a review found in its first version, as a
//! user sees them from outside: no partition stalls behind a failed record, no two handlers of
//! one partition run at once across a rebalance, commits never go backwards and a failed one is
//! sent again, broker round trips never block the async runtime, crafted retry headers hold
//! nothing, a stale ack token settles nothing, and a dead-letter topic that refuses records is
//! reported, not looped on silently.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{http_get, metric, produce_spread, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Fast rewinds on the mock cluster, which holds a fetch for `fetch.wait.max.ms` even when data
/// is there.
const FAST_FETCH: &str = "[kafka.consumer.properties]\n\"fetch.wait.max.ms\" = 10\n";

// --- 1. a failed record never leaves a stale tracked offset that stalls its partition ----------

type Handled = Recorder<(i32, i64)>;

#[kafka_listener(
    id = "flaky_record",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn flaky_record(
    metadata: Metadata,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(handled): State<Handled>,
) -> Result<(), HandlerError> {
    if metadata.offset % 200 == 0 && attempt == 1 {
        return Err(HandlerError::new(
            "the first delivery of every 200th offset fails",
        ));
    }
    handled.push((metadata.partition, metadata.offset));
    Ok(())
}

#[kafka_listener(
    id = "flaky_manual",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn flaky_manual(
    metadata: Metadata,
    DeliveryAttempt(attempt): DeliveryAttempt,
    ack: Ack,
    State(handled): State<Handled>,
) -> Result<(), HandlerError> {
    if metadata.offset % 200 == 0 && attempt == 1 {
        return Err(HandlerError::new(
            "the first delivery of every 200th offset fails",
        ));
    }
    handled.push((metadata.partition, metadata.offset));
    ack.acknowledge();
    Ok(())
}

/// A backlog of `count` records on `partitions` partitions, every 200th offset failing once with
/// no back-off: every offset is handled and every partition committed to its end.
async fn failing_backlog_drains(listener: &str, partitions: i32, count: i64) {
    let cluster = Cluster::start();
    // A real broker is slower to fetch again after each rewind: a smaller backlog there.
    let count = if cluster.embedded().is_some() {
        count
    } else {
        count / 5
    };
    let topic = cluster.topic("stall", partitions);
    let group = unique("stall");
    produce_spread(cluster.bootstrap(), &topic, partitions, count);
    let handled = Handled::default();
    let extra = format!("{FAST_FETCH}[kafka.listener.error-handler]\ninterval = \"0ms\"\n");
    let app = cluster
        .start_listener(&extra, listener, (&topic, &group), handled.clone())
        .await;
    let expected: Vec<Option<i64>> = (0..i64::from(partitions))
        .map(|p| Some((count - p + i64::from(partitions) - 1) / i64::from(partitions)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut committed = Vec::new();
    while Instant::now() < deadline {
        committed = cluster.committed(&group, &topic, partitions);
        if committed == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen: BTreeSet<(i32, i64)> = handled.snapshot().into_iter().collect();
    let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in &seen {
        highest.insert(*partition, *offset);
    }
    assert_eq!(committed, expected, "stalled: handled up to {highest:?}");
    assert_eq!(
        seen.len(),
        usize::try_from(count).expect("count"),
        "every offset handled"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_mode_one_partition_never_stalls_behind_failed_records() {
    failing_backlog_drains("flaky_record", 1, 50_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_mode_six_partitions_never_stall_behind_failed_records() {
    failing_backlog_drains("flaky_record", 6, 50_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_mode_one_partition_never_stalls_behind_failed_records() {
    failing_backlog_drains("flaky_manual", 1, 50_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_mode_six_partitions_never_stall_behind_failed_records() {
    failing_backlog_drains("flaky_manual", 6, 50_000).await;
}

// --- 2. no two handlers of one partition run at once across a rebalance ------------------------

/// Every delivery's start and end: (delivery id, partition, offset, when, `true` at its start).
type Deliveries = Recorder<(u64, i32, i64, Instant, bool)>;

static DELIVERY_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[kafka_listener(
    id = "sleepy",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn sleepy(metadata: Metadata, State(deliveries): State<Deliveries>) {
    let id = DELIVERY_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (partition, offset) = (metadata.partition, metadata.offset);
    deliveries.push((id, partition, offset, Instant::now(), true));
    let first_of_5 = offset == 5
        && deliveries
            .snapshot()
            .iter()
            .filter(|d| d.2 == 5 && d.4)
            .count()
            == 1;
    if first_of_5 {
        tokio::time::sleep(Duration::from_secs(20)).await;
    }
    deliveries.push((id, partition, offset, Instant::now(), false));
}

/// Pairs of deliveries of one partition that overlapped in time; one still running counts as
/// running until now.
fn overlapping(deliveries: &[(u64, i32, i64, Instant, bool)]) -> Vec<(i64, i64)> {
    let now = Instant::now();
    let spans: Vec<(i32, i64, Instant, Instant)> = deliveries
        .iter()
        .filter(|d| d.4)
        .map(|start| {
            let end = deliveries
                .iter()
                .find(|d| !d.4 && d.0 == start.0)
                .map_or(now, |end| end.3);
            (start.1, start.2, start.3, end)
        })
        .collect();
    spans
        .iter()
        .enumerate()
        .flat_map(|(i, a)| spans[i + 1..].iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.0 == b.0 && a.2 < b.3 && b.2 < a.3)
        .map(|(a, b)| (a.1, b.1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_running_across_a_rebalance_never_overlaps_a_redelivery() {
    let cluster = Cluster::start();
    let topic = cluster.topic("overlap", 1);
    let group = unique("overlap");
    let deliveries = Deliveries::default();
    let extra = "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n";
    let member = |deliveries: Deliveries, topic: &str| {
        cluster
            .application(extra)
            .with_listeners(["sleepy"])
            .with_property("topic", topic)
            .with_property("group", &group)
            .with_state(deliveries)
            .start()
    };
    let first = member(deliveries.clone(), &topic)
        .await
        .expect("first member");
    produce_spread(cluster.bootstrap(), &topic, 1, 20);
    let deadline = Instant::now() + PATIENCE;
    while !deliveries.snapshot().iter().any(|d| d.2 == 5) {
        assert!(Instant::now() < deadline, "offset 5 never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second member joins the group while the handler of offset 5 sleeps: the group
    // rebalances, and (the second member reading another topic) gives the partition back to the
    // first, which must not start on it again before its running handler finished. (Across
    // members, Kafka's rebalance timeout is what keeps a slow member's partitions from a new
    // owner; the mock cluster waits only session.timeout.ms - 1 s for members to rejoin.)
    let other = cluster.topic("overlap-other", 1);
    let second = member(Deliveries::default(), &other)
        .await
        .expect("second member");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: BTreeSet<i64> = deliveries
            .snapshot()
            .iter()
            .filter(|d| !d.4)
            .map(|d| d.2)
            .collect();
        if done.len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "handled only {done:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let overlapping = overlapping(&deliveries.snapshot());
    assert!(
        overlapping.is_empty(),
        "deliveries of one partition overlapped: {overlapping:?}"
    );
    first.shutdown().await;
    second.shutdown().await;
}

// --- 3 and 4. manual_immediate commits are monotonic, and a failed one is sent again ------------

#[kafka_listener(
    id = "parking",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual_immediate",
    auto_startup = false
)]
async fn parking(ack: Ack, State(parked): State<Recorder<Ack>>) {
    parked.push(ack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgments_from_many_tasks_in_any_order_commit_everything() {
    let cluster = Cluster::start();
    let topic = cluster.topic("shuffled", 1);
    let group = unique("shuffled");
    let parked = Recorder::<Ack>::default();
    let app = cluster
        .start_listener(FAST_FETCH, "parking", (&topic, &group), parked.clone())
        .await;
    produce_spread(cluster.bootstrap(), &topic, 1, 500);
    parked.wait_len(500).await;
    let mut acks = parked.take_all();
    // A fixed shuffle (a linear congruential sequence), dealt to 8 tasks.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..acks.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = usize::try_from(state >> 33).expect("fits") % (i + 1);
        acks.swap(i, j);
    }
    let mut hands: Vec<Vec<Ack>> = (0..8).map(|_| Vec::new()).collect();
    for (n, ack) in acks.into_iter().enumerate() {
        hands[n % 8].push(ack);
    }
    let tasks: Vec<_> = hands
        .into_iter()
        .map(|hand| {
            tokio::spawn(async move {
                for ack in hand {
                    ack.acknowledge();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("acknowledging task");
    }
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(500)]).await,
        [Some(500)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_manual_immediate_commit_is_sent_again_without_more_traffic() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("refused", 1);
    let group = unique("refused");
    let parked = Recorder::<Ack>::default();
    let app = cluster
        .start_listener("", "parking", (&topic, &group), parked.clone())
        .await;
    produce_spread(cluster.bootstrap(), &topic, 1, 1);
    parked.wait_len(1).await;
    embedded.mock_cluster().expect("mock").request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 20],
    );
    parked.take_all().remove(0).acknowledge();
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    app.shutdown().await;
}

// --- 5. broker round trips never block the async runtime ---------------------------------------

#[test]
fn slow_commits_block_neither_acknowledgments_nor_health_on_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cluster = Cluster::start();
        let Some(embedded) = cluster.embedded() else {
            return;
        };
        let topic = cluster.topic("slowcommit", 2);
        let group = unique("slowcommit");
        let parked = Recorder::<Ack>::default();
        let extra = "[management]\nport = 0\naddress = \"127.0.0.1\"\n";
        let app = cluster
            .start_listener(extra, "parking", (&topic, &group), parked.clone())
            .await;
        produce_spread(cluster.bootstrap(), &topic, 2, 40);
        parked.wait_len(40).await;
        let mock = embedded.mock_cluster().expect("mock");
        mock.broker_round_trip_time(1, Duration::from_secs(2))
            .expect("round trip time");
        // Each acknowledgment in manual_immediate mode starts a commit that takes 2 s.
        let acks = parked.take_all();
        let acking = tokio::spawn(async move {
            for ack in acks {
                ack.acknowledge();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // Ticks of 20 ms: how late the runtime runs them is how long something blocked it.
        let address = app.management_address().expect("management.port is set");
        let (mut worst, mut health_worst) = (Duration::ZERO, Duration::ZERO);
        let watch_until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < watch_until {
            let before = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            worst = worst.max(before.elapsed().saturating_sub(Duration::from_millis(20)));
            let asked = Instant::now();
            let (code, _) = http_get(address, "/health/liveness").await;
            assert_eq!(code, 200);
            health_worst = health_worst.max(asked.elapsed());
        }
        acking.await.expect("acknowledging task");
        assert!(
            worst < Duration::from_millis(200),
            "the runtime was blocked for {worst:?}"
        );
        assert!(
            health_worst < Duration::from_millis(200),
            "/health took {health_worst:?}"
        );
        mock.broker_round_trip_time(1, Duration::ZERO)
            .expect("round trip time");
        assert_eq!(
            cluster
                .wait_committed(&group, &topic, &[Some(20), Some(20)])
                .await,
            [Some(20), Some(20)]
        );
        app.shutdown().await;
    });
}

// --- 7. retry-topic due times from the wire hold nothing -----------------------------------------

#[kafka_listener(
    id = "due_times",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn due_times(Payload(value): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_due_times_neither_panic_nor_hold_a_partition() {
    let cluster = Cluster::start();
    let topic = cluster.topic("duetime", 1);
    let group = unique("duetime");
    let seen = Recorder::<String>::default();
    let extra = "[kafka.listeners.due_times.retry-topic]\nenabled = true\nattempts = 3\ndelay = \"400ms\"\n";
    let app = cluster
        .start_listener(extra, "due_times", (&topic, &group), seen.clone())
        .await;
    let day_ahead = (std::time::SystemTime::now() + Duration::from_secs(86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis();
    let day_ahead = i64::try_from(day_ahead).expect("fits").to_be_bytes();
    let crafted: [(&str, &[u8]); 2] = [
        ("overflow", &[0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("tomorrow", &day_ahead),
    ];
    for (value, due) in crafted {
        app.template()
            .record(&topic)
            .header("retry_topic-backoff-timestamp", due)
            .send(value)
            .await
            .expect("delivered");
    }
    // On a retry topic a due time a day ahead is clamped to the longest configured delay.
    app.template()
        .record(&format!("{topic}-retry-0"))
        .header("retry_topic-backoff-timestamp", day_ahead)
        .send("retry tomorrow")
        .await
        .expect("delivered");
    for n in 0..10 {
        app.template()
            .send_value(&topic, &format!("after-{n}"))
            .await
            .expect("delivered");
    }
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 13 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.snapshot();
    for value in ["overflow", "tomorrow", "retry tomorrow", "after-9"] {
        assert!(
            seen.contains(&value.to_owned()),
            "{value} handled: {seen:?}"
        );
    }
    app.shutdown().await;
}

// --- 8. an ack token of an earlier delivery settles nothing --------------------------------------

#[kafka_listener(
    id = "token_keeper",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn token_keeper(
    ack: Ack,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(parked): State<Recorder<Ack>>,
) -> Result<(), HandlerError> {
    parked.push(ack);
    if attempt == 1 {
        return Err(HandlerError::new("first delivery fails, its token kept"));
    }
    Ok(())
}

/// The same with `ordering = "key"`, where a retry waits in place instead of seeking back.
#[kafka_listener(
    id = "token_keeper_by_key",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    ordering = "key",
    auto_startup = false
)]
async fn token_keeper_by_key(
    ack: Ack,
    attempt: DeliveryAttempt,
    parked: State<Recorder<Ack>>,
) -> Result<(), HandlerError> {
    token_keeper(ack, attempt, parked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_an_earlier_delivery_does_not_settle_the_redelivery() {
    a_stale_token_settles_nothing("token_keeper").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_an_earlier_delivery_does_not_settle_a_retry_in_a_key_lane() {
    a_stale_token_settles_nothing("token_keeper_by_key").await;
}

async fn a_stale_token_settles_nothing(listener: &str) {
    let cluster = Cluster::start();
    let topic = cluster.topic("staletoken", 1);
    let group = unique("staletoken");
    let parked = Recorder::<Ack>::default();
    let extra = "[kafka.listener.error-handler]\ninterval = \"0ms\"\n";
    let app = cluster
        .start_listener(extra, listener, (&topic, &group), parked.clone())
        .await;
    app.template()
        .send_value(&topic, "once")
        .await
        .expect("delivered");
    parked.wait_len(2).await;
    let mut tokens = parked.take_all();
    let current = tokens.remove(1);
    tokens.remove(0).acknowledge();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [None],
        "the first delivery's token committed the redelivery"
    );
    current.acknowledge();
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    app.shutdown().await;
}

// --- 9. a dead-letter topic that refuses records is reported, and nothing is lost ----------------

#[kafka_listener(
    id = "poisoned",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn poisoned(
    State(seen): State<Recorder<String>>,
    Payload(value): Payload<String>,
) -> Result<(), HandlerError> {
    seen.push(value);
    Err(HandlerError::non_retryable("poison"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_dead_letter_topic_backs_off_shows_in_health_and_loses_nothing() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("refusingdlt", 1);
    let group = unique("refusingdlt");
    produce_spread(cluster.bootstrap(), &topic, 1, 1);
    // From now on every produce request is refused: the dead-letter publication fails.
    let mock = embedded.mock_cluster().expect("mock");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 200],
    );
    let seen = Recorder::<String>::default();
    let extra = "[kafka.listener.error-handler]\nrecoverer = \"dead-letter\"\n\
                 [management]\nport = 0\naddress = \"127.0.0.1\"\n";
    let app = cluster
        .start_listener(extra, "poisoned", (&topic, &group), seen.clone())
        .await;
    let address = app.management_address().expect("management.port is set");
    let recovery = |health: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(health).expect("JSON")["recovery"].clone()
    };
    let deadline = Instant::now() + PATIENCE;
    let (failures, status) = loop {
        let (_, metrics) = http_get(address, "/metrics").await;
        let failures = metric(
            &metrics,
            "kafka_listener_recovery_failures_total",
            &[("listener", "poisoned")],
        )
        .unwrap_or(0.0);
        let (_, health) = http_get(address, "/health").await;
        let status = recovery(&health);
        if failures >= 2.0 && status["status"] == "DEGRADED" || Instant::now() > deadline {
            break (failures, status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failures >= 2.0,
        "failed publications are counted: {failures}"
    );
    assert_eq!(status["status"], "DEGRADED", "{status}");
    assert_eq!(status["failing"][0], format!("{topic}-0"), "{status}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, metrics) = http_get(address, "/metrics").await;
    let later = metric(
        &metrics,
        "kafka_listener_recovery_failures_total",
        &[("listener", "poisoned")],
    )
    .unwrap_or(0.0);
    // A fixed one-second retry would have tried about 8 times by now; 1 + 2 + 4 s, 4 or 5.
    assert!(later <= 5.0, "publication backs off: {later} attempts");
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [None],
        "the record stays uncommitted"
    );
    mock.clear_request_errors(RDKafkaApiKey::Produce);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    let dead = common::read_topic(cluster.bootstrap(), &format!("{topic}.DLT"), 1);
    assert_eq!(dead.len(), 1, "dead-lettered once it could be");
    let (_, health) = http_get(address, "/health").await;
    assert_eq!(recovery(&health)["status"], "OK", "{health}");
    app.shutdown().await;
}

// --- 10. a header name that is not UTF-8 neither panics a task nor stalls its partition ---------

#[kafka_listener(
    id = "header_names",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn header_names(
    Payload(value): Payload<String>,
    headers: Headers,
    State(seen): State<Recorder<(String, Vec<String>)>>,
) {
    seen.push((value, headers.iter().map(|h| h.key.clone()).collect()));
}

/// Headers with one whose name is `name`, bytes the client's own API (names are `&str`) cannot
/// send but the protocol carries.
fn headers_named(name: &[u8]) -> rdkafka::message::OwnedHeaders {
    let headers = rdkafka::message::OwnedHeaders::new();
    let native = std::ptr::from_ref(headers.as_borrowed())
        .cast_mut()
        .cast::<rdkafka::bindings::rd_kafka_headers_t>();
    let length = isize::try_from(name.len()).expect("short name");
    // SAFETY: `native` is the header list `headers` owns (BorrowedHeaders is that pointer);
    // librdkafka copies the name and value.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            native,
            name.as_ptr().cast(),
            length,
            b"v".as_ptr().cast(),
            1,
        )
    };
    assert_eq!(error, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
    headers.insert(rdkafka::message::Header {
        key: "plain",
        value: Some("v"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_read_lossily_and_stalls_nothing() {
    let cluster = Cluster::start();
    let topic = cluster.topic("headernames", 1);
    let group = unique("headernames");
    let producer = common::producer(cluster.bootstrap());
    common::send_waiting(
        &producer,
        rdkafka::producer::BaseRecord::<(), _>::to(&topic)
            .payload("crafted")
            .headers(headers_named(b"\xfftenant")),
    );
    common::send_waiting(
        &producer,
        rdkafka::producer::BaseRecord::<(), _>::to(&topic).payload("after"),
    );
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("produced");
    let seen = Recorder::<(String, Vec<String>)>::default();
    let app = cluster
        .start_listener("", "header_names", (&topic, &group), seen.clone())
        .await;
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.snapshot(),
        [
            (
                "crafted".to_owned(),
                vec!["\u{fffd}tenant".to_owned(), "plain".to_owned()]
            ),
            ("after".to_owned(), vec![]),
        ]
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    app.shutdown().await;
}
