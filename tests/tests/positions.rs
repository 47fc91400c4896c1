//! Where listeners read: explicit partitions from an initial offset (Spring's `topicPartitions`
//! with `PartitionOffset`), and topic patterns, which pick up topics created later.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;

#[kafka_listener(
    id = "pinned",
    topics = "${topic}",
    group = "${group}",
    partitions = "${partitions:0, 2}",
    initial_offset = "${initial:earliest}",
    concurrency = 2,
    auto_startup = false
)]
async fn pinned(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

#[kafka_listener(
    id = "resuming",
    topics = "${topic}",
    group = "${group}",
    partitions = "1",
    auto_startup = false
)]
async fn resuming(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

#[kafka_listener(
    id = "patterned",
    topic_pattern = "${prefix}-.*",
    group = "${group}",
    auto_startup = false
)]
async fn patterned(
    Payload(text): Payload<String>,
    meta: Metadata,
    State(seen): State<Recorder<String>>,
) {
    seen.push(format!("{} {text}", meta.topic));
}

/// Writes `count` records `p<partition>-<n>` to each of `partitions` of `topic`.
async fn fill(cluster: &Cluster, topic: &str, partitions: i32, count: usize) {
    for partition in 0..partitions {
        for n in 0..count {
            cluster
                .kit()
                .record(topic)
                .partition(partition)
                .text(&format!("p{partition}-{n}"))
                .await;
        }
    }
}

/// Waits until `seen` holds `count` values, then a little longer for any that should not come.
async fn settle(seen: &Recorder<String>, count: usize) -> Vec<String> {
    seen.wait_len(count).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut values = seen.snapshot();
    values.sort();
    values
}

/// Starts an application with `listener` (declared `auto_startup = false`) and `extra` TOML,
/// the properties given, and `seen`; then starts the listener.
async fn start_later(
    cluster: &Cluster,
    (extra, listener): (&str, &str),
    properties: &[(&str, &str)],
    seen: &Recorder<String>,
) -> kafka_runtime::RunningApplication {
    let mut app = cluster
        .application(extra)
        .with_listeners([listener])
        .with_state(seen.clone());
    for &(name, value) in properties {
        app = app.with_property(name, value);
    }
    let app = app.start().await.expect("application starts");
    app.listener(listener)
        .expect("listener")
        .start()
        .await
        .expect("listener starts");
    app
}

async fn start_pinned(
    cluster: &Cluster,
    (topic, group): (&str, &str),
    properties: &[(&str, &str)],
    seen: &Recorder<String>,
) -> kafka_runtime::RunningApplication {
    let mut all = vec![("topic", topic), ("group", group)];
    all.extend_from_slice(properties);
    start_later(cluster, ("", "pinned"), &all, seen).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_are_read_from_their_initial_offset_without_the_group() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("pinned", 4), unique("pinned"));
    fill(&cluster, &topic, 4, 3).await;

    // earliest: every record of partitions 0 and 2, none of 1 and 3; one partition per consumer.
    let seen = Recorder::<String>::default();
    let app = start_pinned(&cluster, (&topic, &group), &[], &seen).await;
    let values = settle(&seen, 6).await;
    assert_eq!(
        values,
        ["p0-0", "p0-1", "p0-2", "p2-0", "p2-1", "p2-2"],
        "partitions 0 and 2 from the beginning"
    );
    let assignments = app.assignments();
    let pinned = assignments.get("pinned").expect("pinned runs");
    assert_eq!(pinned.get("pinned-0"), Some(&vec![(topic.clone(), 0)]));
    assert_eq!(pinned.get("pinned-1"), Some(&vec![(topic.clone(), 2)]));
    let expected = [Some(3), None, Some(3), None];
    assert_eq!(
        cluster.wait_committed(&group, &topic, &expected).await,
        expected
    );
    assert!(app.shutdown().await.is_clean());

    // The initial offset applies at every start, committed offsets or not: 2 from the end.
    let seen = Recorder::<String>::default();
    let app = start_pinned(&cluster, (&topic, &group), &[("initial", "-2")], &seen).await;
    let values = settle(&seen, 4).await;
    assert_eq!(values, ["p0-1", "p0-2", "p2-1", "p2-2"]);
    assert!(app.shutdown().await.is_clean());

    // latest: only what is written after the start; partition 3 alone now.
    let seen = Recorder::<String>::default();
    let app = start_pinned(
        &cluster,
        (&topic, &group),
        &[("initial", "latest"), ("partitions", "3")],
        &seen,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(seen.snapshot().is_empty(), "{:?}", seen.snapshot());
    cluster
        .kit()
        .record(&topic)
        .partition(3)
        .text("p3-new")
        .await;
    assert_eq!(settle(&seen, 1).await, ["p3-new"]);
    assert!(app.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_start_from_a_time() {
    let cluster = Cluster::start();
    if cluster.embedded().is_some() {
        // librdkafka's mock answers every lookup by time with the end of the partition.
        eprintln!("skipped: the embedded cluster cannot look up offsets by time");
        return;
    }
    let (topic, group) = (cluster.topic("timed", 3), unique("timed"));
    fill(&cluster, &topic, 3, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for partition in [0, 2] {
        cluster
            .kit()
            .record(&topic)
            .partition(partition)
            .text(&format!("late-{partition}"))
            .await;
    }
    let seen = Recorder::<String>::default();
    let initial = format!("timestamp:{since}");
    let app = start_pinned(&cluster, (&topic, &group), &[("initial", &initial)], &seen).await;
    assert_eq!(settle(&seen, 2).await, ["late-0", "late-2"]);
    assert!(app.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_partitions_without_an_initial_offset_resume_from_the_committed_one() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("resuming", 2), unique("resuming"));
    fill(&cluster, &topic, 2, 3).await;
    let seen = Recorder::<String>::default();
    let properties = [("topic", topic.as_str()), ("group", group.as_str())];
    let start = || start_later(&cluster, ("", "resuming"), &properties, &seen);
    let app = start().await;
    assert_eq!(settle(&seen, 3).await, ["p1-0", "p1-1", "p1-2"]);
    let expected = [None, Some(3)];
    assert_eq!(
        cluster.wait_committed(&group, &topic, &expected).await,
        expected
    );
    assert!(app.shutdown().await.is_clean());

    for n in 3..5 {
        cluster
            .kit()
            .record(&topic)
            .partition(1)
            .text(&format!("p1-{n}"))
            .await;
    }
    seen.take_all();
    let app = start().await;
    assert_eq!(settle(&seen, 2).await, ["p1-3", "p1-4"]);
    assert!(app.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_pattern_consumes_every_matching_topic_and_picks_up_new_ones() {
    let cluster = Cluster::start();
    let prefix = unique("pattern");
    let group = unique("pattern");
    for name in ["a", "b"] {
        cluster.kit().create_topic(&format!("{prefix}-{name}"), 2);
    }
    // Not matched: the pattern is matched against the whole name.
    for other in [format!("{prefix}_other"), format!("x{prefix}-a")] {
        cluster.kit().create_topic(&other, 1);
        cluster.kit().record(&other).text("unmatched").await;
    }
    for name in ["a", "b"] {
        cluster
            .kit()
            .record(&format!("{prefix}-{name}"))
            .text(&format!("to-{name}"))
            .await;
    }
    let seen = Recorder::<String>::default();
    // The embedded cluster rebalances for a new topic only after the session timeout.
    let extra = "[kafka.consumer.properties]\n\"topic.metadata.refresh.interval.ms\" = 1000\n\"session.timeout.ms\" = 6000\n";
    let properties = [("prefix", prefix.as_str()), ("group", group.as_str())];
    let app = start_later(&cluster, (extra, "patterned"), &properties, &seen).await;
    let values = settle(&seen, 2).await;
    assert_eq!(
        values,
        [format!("{prefix}-a to-a"), format!("{prefix}-b to-b")]
    );

    // A topic created now is picked up at the next metadata refresh.
    let created = Instant::now();
    let late = format!("{prefix}-late");
    cluster.kit().create_topic(&late, 1);
    cluster.kit().record(&late).text("to-late").await;
    seen.wait_len(3).await;
    let picked_up = created.elapsed();
    assert!(seen.snapshot().contains(&format!("{late} to-late")));
    assert!(picked_up < PATIENCE);
    eprintln!("a new matching topic was picked up in {picked_up:?}");
    assert_eq!(
        cluster.wait_committed(&group, &late, &[Some(1)]).await,
        [Some(1)]
    );
    assert!(app.shutdown().await.is_clean());
}

/// A pattern's dead letters go where a named topic's would: `<topic>.DLT` of the record's own
/// topic, which nobody could create at startup (the topics were not known then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_listener_dead_letters_to_the_topic_of_the_record() {
    let cluster = Cluster::start();
    let prefix = unique("pattern-dlt");
    let group = unique("pattern-dlt");
    let topic = format!("{prefix}-a");
    cluster.kit().create_topic(&topic, 2);
    cluster
        .kit()
        .record(&topic)
        .partition(1)
        .key("poison")
        .bytes([0xff, 0xfe])
        .await;
    cluster
        .kit()
        .record(&topic)
        .partition(1)
        .text("after")
        .await;
    let seen = Recorder::<String>::default();
    let extra = "[kafka.listener.error-handler]\nrecoverer = \"dead-letter\"\n";
    let properties = [("prefix", prefix.as_str()), ("group", group.as_str())];
    let app = start_later(&cluster, (extra, "patterned"), &properties, &seen).await;
    seen.wait_len(1).await;
    let letters = cluster
        .kit()
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    assert_eq!(letters[0].original_topic.as_deref(), Some(topic.as_str()));
    assert_eq!(letters[0].original_offset, Some(0));
    assert_eq!(letters[0].record.key.as_deref(), Some(&b"poison"[..]));
    assert_eq!(
        cluster
            .wait_committed(&group, &topic, &[None, Some(2)])
            .await,
        [None, Some(2)]
    );
    assert!(app.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_partition_setting_names_its_key() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("wrong", 1), unique("wrong"));
    let cases = [
        (
            "[kafka.listeners.pinned]\npartitions = \"0-x\"\n",
            "kafka.listeners.\"pinned\".partitions: `0-x` does not name partitions",
        ),
        (
            "[kafka.listeners.pinned]\ninitial-offset = \"yesterday\"\n",
            "kafka.listeners.\"pinned\".initial-offset: `yesterday` is not an initial offset",
        ),
    ];
    // Refused when the application starts, though the listener would start later.
    for (extra, expected) in cases {
        let error = cluster
            .application(extra)
            .with_listeners(["pinned"])
            .with_property("topic", &topic)
            .with_property("group", &group)
            .with_state(Recorder::<String>::default())
            .start()
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
