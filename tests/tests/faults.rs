//! Broker and producer faults, injected through the mock cluster (and, on the real-broker pass, a
//! tansu of the test's own stopped and started again): the container keeps going or recovers by
//! itself, and nothing acknowledged is lost; a commit that fails is retried.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, OwnBroker, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::{Config, RunningApplication, SendError};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

#[kafka_listener(
    id = "steadfast",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn steadfast(
    Payload(value): Payload<String>,
    ack: Ack,
    State(seen): State<Recorder<String>>,
) {
    seen.push(value);
    ack.acknowledge();
}

async fn start(
    app: KafkaApplication,
    topic: &str,
    group: &str,
    seen: &Recorder<String>,
) -> RunningApplication {
    app.with_listeners(["steadfast"])
        .with_property("topic", topic)
        .with_property("group", group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts")
}

async fn send_all(app: &RunningApplication, topic: &str, range: std::ops::Range<u32>) {
    let results = app
        .template()
        .send_batch(
            topic,
            range.map(|n| (format!("k{}", n % 7), format!("v{n}"))),
        )
        .await;
    assert!(results.iter().all(Result::is_ok), "records are produced");
}

/// Every value `v0..v{count}` seen at least once; returns how many were seen twice or more.
fn all_seen(seen: &Recorder<String>, count: u32) -> usize {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for value in seen.snapshot() {
        *counts.entry(value).or_default() += 1;
    }
    let missing: Vec<String> = (0..count)
        .map(|n| format!("v{n}"))
        .filter(|v| !counts.contains_key(v))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    counts.values().filter(|c| **c > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_retried_until_the_broker_takes_them() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("commitfail", 2);
    let group = common::unique("commitfail");
    let seen = Recorder::default();
    let app = start(cluster.application(""), &topic, &group, &seen).await;
    let mock = embedded.mock_cluster().expect("mock");
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 6],
    );
    send_all(&app, &topic, 0..100).await;
    seen.wait_len(100).await;
    let deadline = Instant::now() + PATIENCE;
    let mut total = 0;
    while Instant::now() < deadline {
        total = cluster.committed_total(&group, &topic, 2);
        if total == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        total, 100,
        "the refused commits were sent again until they landed"
    );
    assert_eq!(
        all_seen(&seen, 100),
        0,
        "no redelivery while the consumer runs"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_join_errors_are_recovered_from() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let mock = embedded.mock_cluster().expect("mock");
    let topic = cluster.topic("fetchfail", 2);
    let group = common::unique("fetchfail");
    mock.request_errors(
        RDKafkaApiKey::JoinGroup,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS; 2],
    );
    let seen = Recorder::default();
    let app = start(cluster.application(""), &topic, &group, &seen).await;
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    send_all(&app, &topic, 0..100).await;
    seen.wait_len(100).await;
    all_seen(&seen, 100);
    app.shutdown().await;
    assert_eq!(
        cluster.committed_total(&group, &topic, 2),
        100,
        "everything acknowledged is committed: {:?}",
        cluster.committed(&group, &topic, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_and_back_loses_nothing() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("brokerdown", 2);
    let group = common::unique("brokerdown");
    let seen = Recorder::default();
    let extra = "[kafka.producer.properties]\n\"message.timeout.ms\" = 60000\n";
    let app = start(cluster.application(extra), &topic, &group, &seen).await;
    let mock = embedded.mock_cluster().expect("mock");
    let caught_up = away_and_back(
        &cluster,
        app,
        (&topic, &group, &seen),
        || mock.broker_down(1).expect("down"),
        || mock.broker_up(1).expect("up"),
    )
    .await;
    eprintln!("recovered {caught_up:?} after the broker came back");
}

/// With 50 records handled, takes the broker away (`down`), sends 50 more, brings it back after
/// 3 s (`up`), and checks that all 100 are handled and committed; returns how long that took
/// once the broker was back.
async fn away_and_back(
    cluster: &Cluster,
    app: RunningApplication,
    (topic, group, seen): (&str, &str, &Recorder<String>),
    down: impl FnOnce(),
    up: impl FnOnce(),
) -> Duration {
    send_all(&app, topic, 0..50).await;
    seen.wait_len(50).await;
    down();
    let template = app.template().clone();
    let topic_for_sends = topic.to_owned();
    // Sent while the broker is away: the producer holds them until it is back.
    let sends = tokio::spawn(async move {
        template
            .send_batch(
                &topic_for_sends,
                (50..100u32).map(|n| (format!("k{}", n % 7), format!("v{n}"))),
            )
            .await
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    up();
    let back = Instant::now();
    let results = sends.await.expect("send task");
    assert!(
        results.iter().all(Result::is_ok),
        "held records are delivered"
    );
    seen.wait_len(100).await;
    let caught_up = back.elapsed();
    all_seen(seen, 100);
    app.shutdown().await;
    assert_eq!(
        cluster.committed_total(group, topic, 2),
        100,
        "{:?}",
        cluster.committed(group, topic, 2)
    );
    caught_up
}

#[kafka_listener(
    id = "sluggish",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn sluggish(metadata: Metadata, ack: Ack, State(seen): State<Recorder<i64>>) {
    if metadata.offset == 0 {
        // Longer than max.poll.interval.ms below.
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    seen.push(metadata.offset);
    ack.acknowledge();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_max_poll_interval_causes_no_rebalance() {
    let cluster = Cluster::start();
    let topic = cluster.topic("sluggish", 1);
    let group = common::unique("sluggish");
    let seen = Recorder::<i64>::default();
    let extra = "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n\"max.poll.interval.ms\" = 6000\n";
    let app = cluster
        .application(extra)
        .with_listeners(["sluggish"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("starts");
    let results = app
        .template()
        .send_batch(&topic, (0..5u32).map(|n| ("k", n)))
        .await;
    assert!(results.iter().all(Result::is_ok));
    let started = Instant::now();
    seen.wait_len(5).await;
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "the handler was slow"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(5)]).await,
        [Some(5)],
        "the slow record is committed once done"
    );
    // A rebalance would have revoked the partition and delivered the slow record again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(seen.snapshot(), [0, 1, 2, 3, 4], "each record once");
    let assigned = app.assignments();
    assert_eq!(assigned["sluggish"]["sluggish-0"], [(topic.clone(), 0)]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_broker_that_is_down_fails_typed_after_the_delivery_timeout() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("senddown", 1);
    let config = cluster.config("[kafka.producer.properties]\n\"message.timeout.ms\" = 2000\n");
    let template = KafkaTemplate::new(&config.kafka, cluster.bootstrap()).expect("template");
    template
        .send(&topic, "k", "warm-up")
        .await
        .expect("the broker is up");
    embedded
        .mock_cluster()
        .expect("mock")
        .broker_down(1)
        .expect("down");
    let started = Instant::now();
    let error = template
        .send(&topic, "k", "lost?")
        .await
        .expect_err("no broker, no delivery");
    let took = started.elapsed();
    assert!(matches!(error, SendError::Delivery { .. }), "{error}");
    // librdkafka scans for timed-out messages about once a second, and a request in flight when
    // the broker went away first waits for its connection to fail: 10.9 s was seen on a loaded
    // machine. The point is that it fails, typed, neither at once nor never.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(30),
        "fails after message.timeout.ms, not at once nor never: {took:?}"
    );
    embedded
        .mock_cluster()
        .expect("mock")
        .broker_up(1)
        .expect("up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_retries_without_duplicates() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let topic = cluster.topic("idempotent", 1);
    let config = cluster.config(
        "producer.acks = \"all\"\n[kafka.producer.properties]\n\"enable.idempotence\" = true\n",
    );
    let template = KafkaTemplate::new(&config.kafka, cluster.bootstrap()).expect("template");
    template
        .send(&topic, "k", "v-first")
        .await
        .expect("warm-up");
    embedded.mock_cluster().expect("mock").request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    let results = template
        .send_batch(&topic, (0..500u32).map(|n| ("k", format!("v{n}"))))
        .await;
    assert!(results.iter().all(Result::is_ok), "retried until delivered");
    let records = common::read_topic(cluster.bootstrap(), &topic, 501);
    let values: Vec<String> = records
        .iter()
        .filter_map(|m| {
            use rdkafka::message::Message;
            m.payload().map(|p| String::from_utf8_lossy(p).into_owned())
        })
        .collect();
    // Strings go out as they are (no JSON quotes).
    let expected: Vec<String> = std::iter::once("v-first".to_owned())
        .chain((0..500).map(|n| format!("v{n}")))
        .collect();
    assert_eq!(values, expected, "each record once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_stopped_and_restarted_loses_nothing() {
    if std::env::var("KAFKA_BOOTSTRAP_SERVERS").is_err() {
        // The embedded pass covers broker_down / broker_up above.
        return;
    }
    let broker = OwnBroker::start(&["start"]);
    let bootstrap = broker.bootstrap.clone();
    let cluster = Cluster::external(&bootstrap);
    let topic = cluster.topic("restart", 2);
    let group = common::unique("restart");
    let seen = Recorder::default();
    let config = Config::from_toml_str(
        "[kafka.producer.properties]\n\"message.timeout.ms\" = 60000\n\
         [kafka.consumer.properties]\n\"reconnect.backoff.max.ms\" = 1000\n",
        "restart.toml",
    )
    .expect("config")
    .with_bootstrap_servers(&broker.bootstrap);
    let app = start(KafkaApplication::new(config), &topic, &group, &seen).await;
    let port = bootstrap.rsplit(':').next().expect("a port");
    let caught_up = away_and_back(
        &cluster,
        app,
        (&topic, &group, &seen),
        || {
            broker.run(&["stop"], None);
        },
        || {
            broker.run(&["start"], Some(port));
        },
    )
    .await;
    eprintln!("tansu restart: caught up {caught_up:?} after it was back");
    drop(broker);
}
