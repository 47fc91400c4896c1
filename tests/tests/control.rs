//! Listener control at run time (Spring's `KafkaListenerEndpointRegistry`): pause and resume,
//! stop and start, a listener declared without `auto_startup` started later, and the
//! management endpoint's `/listeners`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{http, http_get, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::SeekTo;

/// How long a test watches for records that must not be handled.
const QUIET: Duration = Duration::from_millis(1500);

/// Records each value it handles.
#[kafka_listener(
    id = "controlled",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn controlled(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

/// A second member of `controlled`'s group, started later.
#[kafka_listener(
    id = "controlled_twin",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn controlled_twin(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

/// Produces `values` to `topic`, spread over `partitions` partitions.
async fn produce(cluster: &Cluster, topic: &str, partitions: i32, values: &[String]) {
    for (n, value) in values.iter().enumerate() {
        let partition = i32::try_from(n).expect("index") % partitions;
        cluster
            .kit()
            .record(topic)
            .partition(partition)
            .text(value)
            .await;
    }
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n}")).collect()
}

async fn start(
    cluster: &Cluster,
    extra: &str,
    (topic, group): (&str, &str),
    seen: &Recorder<String>,
) -> kafka_runtime::RunningApplication {
    cluster
        .start_listener(extra, "controlled", (topic, group), seen.clone())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_listener_reads_nothing_until_resumed_also_after_a_rebalance() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("paused", 2), unique("paused"));
    let extra = "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n";
    let first = Recorder::<String>::default();
    let app = start(&cluster, extra, (&topic, &group), &first).await;
    produce(&cluster, &topic, 2, &values("before", 2)).await;
    first.wait_len(2).await;

    let listener = app
        .listener("controlled")
        .expect("the application's listener");
    listener.pause();
    assert!(listener.is_paused());
    produce(&cluster, &topic, 2, &values("paused", 4)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        first.len(),
        2,
        "a paused listener handled {:?}",
        first.snapshot()
    );

    // A second member joins: the group rebalances and gives one partition to each. The first
    // member's partition stays paused (spring-kafka#2222 lost the pause here); the second
    // member handles its own.
    let second = Recorder::<String>::default();
    let other = start(&cluster, extra, (&topic, &group), &second).await;
    second.wait_len(2).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        first.len(),
        2,
        "the pause was lost in the rebalance: {:?}",
        first.snapshot()
    );

    listener.resume();
    assert!(!listener.is_paused());
    first.wait_len(4).await;
    let handled: BTreeSet<String> = first
        .snapshot()
        .into_iter()
        .chain(second.snapshot())
        .collect();
    let produced: BTreeSet<String> = values("before", 2)
        .into_iter()
        .chain(values("paused", 4))
        .collect();
    assert_eq!(handled, produced);
    cluster.kit().wait_committed(&group, &topic, PATIENCE).await;
    other.shutdown().await;
    app.shutdown().await;
}

/// Records each value it handles; fails the first delivery of `"fail-once"`.
#[kafka_listener(
    id = "flaky",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn flaky(
    Payload(text): Payload<String>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(seen): State<Recorder<String>>,
) -> Result<(), HandlerError> {
    seen.push(format!("{text}#{attempt}"));
    if text == "fail-once" && attempt == 1 {
        return Err(HandlerError::new("the first delivery fails"));
    }
    Ok(())
}

/// Found in review: a record retried in place holds the partition without pausing it in
/// librdkafka, so a resume during that hold must still resume it (the hold ends without a
/// release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_resume_during_a_retry_back_off_leaves_the_partition_reading() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("flaky", 1), unique("flaky"));
    let seen = Recorder::<String>::default();
    let errors = "[kafka.listener.error-handler]\nmax-attempts = 3\ninterval = \"1500ms\"\n";
    let app = cluster
        .start_listener(errors, "flaky", (&topic, &group), seen.clone())
        .await;
    let kafka = cluster.kit();
    kafka.record(&topic).text("fail-once").await;
    seen.wait_len(1).await;
    let listener = app.listener("flaky").expect("the application's listener");
    listener.pause();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    listener.resume();
    kafka.record(&topic).text("after").await;
    seen.wait_len(3).await;
    assert_eq!(seen.snapshot(), ["fail-once#1", "fail-once#2", "after#1"]);
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_paused_partition_holds_back_only_itself() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("one-paused", 2), unique("one-paused"));
    let seen = Recorder::<String>::default();
    let app = start(&cluster, "", (&topic, &group), &seen).await;
    let listener = app
        .listener("controlled")
        .expect("the application's listener");
    listener.pause_partition(&topic, 1);
    assert_eq!(listener.paused_partitions(), [(topic.clone(), 1)]);
    produce(&cluster, &topic, 2, &values("v", 6)).await;
    seen.wait_len(3).await;
    tokio::time::sleep(QUIET).await;
    let mut handled = seen.snapshot();
    handled.sort();
    assert_eq!(handled, ["v-0", "v-2", "v-4"], "only partition 0's records");
    listener.resume_partition(&topic, 1);
    seen.wait_len(6).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_without_auto_startup_starts_later_and_stops_and_starts_again() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("late", 1), unique("late"));
    let seen = Recorder::<String>::default();
    // No selection: the application has every listener of this test binary, and starts none of
    // them (all are declared with `auto_startup = false`). A short session: on the embedded
    // cluster a member joining after another left waits out the session timeout.
    let app = cluster
        .application("[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n")
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts");
    let listener = app
        .listener("controlled")
        .expect("a listener of the application");
    assert!(!listener.is_running());
    assert!(app.assignments().is_empty(), "{:?}", app.assignments());
    produce(&cluster, &topic, 1, &values("early", 3)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(seen.len(), 0, "nothing runs before start()");

    listener.start().await.expect("the listener starts");
    assert!(listener.is_running());
    seen.wait_len(3).await;
    cluster.kit().wait_committed(&group, &topic, PATIENCE).await;

    let report = listener.stop().await;
    assert!(report.is_clean(), "{:?}", report.abandoned());
    assert!(!listener.is_running());
    assert_eq!(
        cluster.kit().committed(&group, &topic).await,
        [Some(3)],
        "committed at its stop"
    );
    produce(&cluster, &topic, 1, &values("later", 2)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        seen.len(),
        3,
        "a stopped listener handled {:?}",
        seen.snapshot()
    );

    listener.start().await.expect("the listener starts again");
    seen.wait_len(5).await;
    assert_eq!(
        seen.snapshot(),
        values("early", 3)
            .into_iter()
            .chain(values("later", 2))
            .collect::<Vec<_>>(),
        "from the committed offset on: nothing lost, nothing twice"
    );
    app.shutdown().await;
    assert!(
        listener.start().await.is_err(),
        "nothing starts after shutdown"
    );
}

/// A first `cargo run` has no broker configured: the application's own embedded cluster. There a
/// member joining an established group waits `session.timeout.ms` - 1 s for its rebalance (the
/// mock's rule); the application keeps that short, not librdkafka's 44 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_its_own_embedded_cluster_a_member_joining_late_is_assigned_within_seconds() {
    let config = kafka_runtime::Config::from_toml_str("[kafka]\n", "test.toml")
        .expect("an empty configuration is valid");
    let (topic, group) = (unique("late-member"), unique("late-member"));
    let seen = Recorder::<String>::default();
    let app = kafka_runtime::KafkaApplication::new(config)
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts with its own embedded cluster");
    let assigned = |listener: &str| {
        app.assignments().get(listener).map_or(0, |consumers| {
            consumers.values().map(Vec::len).sum::<usize>()
        })
    };
    // The mock creates a topic when it is first produced to.
    app.template()
        .send(&topic, "key", "created")
        .await
        .expect("the topic is created");
    let first = app.listener("controlled").expect("a listener");
    first.start().await.expect("the first member starts");
    let deadline = std::time::Instant::now() + PATIENCE;
    while assigned("controlled") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(assigned("controlled") > 0, "the first member is assigned");

    let joined = std::time::Instant::now();
    let twin = app.listener("controlled_twin").expect("a listener");
    twin.start().await.expect("the second member starts");
    while assigned("controlled_twin") == 0 && joined.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = joined.elapsed();
    assert!(
        assigned("controlled_twin") > 0 && waited < Duration::from_secs(20),
        "the late member was assigned {} partitions after {waited:?}: {:?}",
        assigned("controlled_twin"),
        app.assignments()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_listed_over_http_and_controlled_only_when_allowed() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("listed", 1), unique("listed"));
    let seen = Recorder::<String>::default();
    // Two applications one after the other in one group: a short session, so that on the
    // embedded cluster a member whose leave the broker has not seen yet cannot hold up the second
    // one's join for librdkafka's default 45 s.
    let session = "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n";
    let locked = start(
        &cluster,
        &format!("{session}[management]\nport = 0\n"),
        (&topic, &group),
        &seen,
    )
    .await;
    let address = locked.management_address().expect("management endpoint");
    let (status, body) = http_get(address, "/listeners").await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed[0]["id"], "controlled");
    assert_eq!(listed[0]["state"], "running");
    assert_eq!(listed[0]["group"], group.as_str());
    let (status, body) = http(address, "POST", "/listeners/controlled/pause").await;
    assert_eq!(status, 403, "control is off by default: {body}");
    assert!(!locked.listener("controlled").expect("listener").is_paused());
    locked.shutdown().await;

    let open = format!("{session}[management]\nport = 0\nlistener-control = true\n");
    let app = start(&cluster, &open, (&topic, &group), &seen).await;
    let address = app.management_address().expect("management endpoint");
    let (status, body) = http(address, "POST", "/listeners/controlled/pause").await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed[0]["state"], "paused");
    produce(&cluster, &topic, 1, &values("held", 2)).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(seen.len(), 0, "paused over HTTP: {:?}", seen.snapshot());
    let (status, _) = http(address, "POST", "/listeners/controlled/resume").await;
    assert_eq!(status, 200);
    seen.wait_len(2).await;
    let (status, body) = http(address, "POST", "/listeners/controlled/stop").await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = http_get(address, "/listeners").await;
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed[0]["state"], "stopped");
    let (status, _) = http(address, "POST", "/listeners/nobody/stop").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_seeks_back_to_the_beginning_to_the_end_and_to_a_time() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("seeking", 1), unique("seeking"));
    let seen = Recorder::<String>::default();
    let app = start(&cluster, "", (&topic, &group), &seen).await;
    let listener = app
        .listener("controlled")
        .expect("the application's listener");
    produce(&cluster, &topic, 1, &values("s", 6)).await;
    seen.wait_len(6).await;
    let tail = |from: usize| seen.snapshot()[from..].to_vec();

    assert!(
        listener.seek(&topic, 0, SeekTo::Offset(3)),
        "the partition is assigned"
    );
    seen.wait_len(9).await;
    assert_eq!(tail(6), ["s-3", "s-4", "s-5"]);
    assert!(listener.seek(&topic, 0, SeekTo::Beginning));
    seen.wait_len(15).await;
    assert_eq!(tail(9), values("s", 6));
    cluster.kit().wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(cluster.kit().committed(&group, &topic).await, [Some(6)]);

    assert!(listener.seek(&topic, 0, SeekTo::End));
    tokio::time::sleep(QUIET).await;
    assert_eq!(seen.len(), 15, "nothing before the end: {:?}", tail(15));
    assert!(
        !listener.seek(&topic, 7, SeekTo::End),
        "no consumer has partition 7"
    );
    if cluster.embedded().is_some() {
        // The mock cluster answers a ListOffsets by time with the end of the partition.
        app.shutdown().await;
        return;
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    produce(&cluster, &topic, 1, &values("t", 2)).await;
    seen.wait_len(17).await;
    let at = i64::try_from(before).expect("milliseconds");
    assert!(listener.seek(&topic, 0, SeekTo::Timestamp(at)));
    seen.wait_len(19).await;
    assert_eq!(tail(15), ["t-0", "t-1", "t-0", "t-1"]);
    app.shutdown().await;
}
