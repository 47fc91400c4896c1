//! The management endpoint as an operator's probes and Prometheus scraper see it: readiness
//! waits for the group, flips when the broker goes away and back, and `/metrics` shows records
//! and a consumer lag that grows while the handler stalls and shrinks after.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{http_get, metric, Cluster, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::RunningApplication;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::watch;

/// Stats every 200 ms, so that lag and broker state show within a test's patience.
const MANAGEMENT: &str = "[management]\nport = 0\naddress = \"127.0.0.1\"\nstatistics-interval = \"200ms\"\nlag-alert-threshold = 10\n";

#[kafka_listener(
    id = "probed",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn probed(Payload(_value): Payload<String>) {}

/// Holds every record until the gate opens.
#[derive(Clone)]
struct Gate(watch::Receiver<bool>);

#[kafka_listener(
    id = "gated",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn gated(Payload(_value): Payload<String>, ack: Ack, State(gate): State<Gate>) {
    let mut open = gate.0.clone();
    let _ = open.wait_for(|open| *open).await;
    ack.acknowledge();
}

async fn start(
    cluster: &Cluster,
    listener: &str,
    topic: &str,
    group: &str,
    app: impl FnOnce(KafkaApplication) -> KafkaApplication,
) -> (RunningApplication, SocketAddr) {
    let extra = format!("consumer.properties.\"reconnect.backoff.max.ms\" = 500\n{MANAGEMENT}");
    let running = app(cluster.application(&extra))
        .with_listeners([listener])
        .with_property("topic", topic)
        .with_property("group", group)
        .start()
        .await
        .expect("application starts");
    let address = running
        .management_address()
        .expect("management.port is set");
    (running, address)
}

/// Polls `path` until its status is `status`; returns the last body.
async fn wait_status(address: SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, body) = http_get(address, path).await;
        if code == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {code} (want {status}) for {PATIENCE:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/metrics` until `check` accepts it; returns the exposition.
async fn wait_metrics(address: SocketAddr, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (code, body) = http_get(address, "/metrics").await;
        assert_eq!(code, 200, "/metrics answers: {body}");
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}; /metrics:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/health` until `check` accepts its JSON; returns it.
async fn wait_health(
    address: SocketAddr,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = http_get(address, "/health").await;
        let health: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
        if check(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "/health for {PATIENCE:?}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_group_and_flips_while_the_broker_is_down() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        // Taking the broker down needs the mock cluster.
        return;
    };
    let topic = cluster.topic("probed", 2);
    let group = common::unique("probed-group");
    let (running, address) = start(&cluster, "probed", &topic, &group, |app| app).await;

    // The mock cluster's group join takes 3 s: not ready before it.
    let (code, body) = http_get(address, "/health/readiness").await;
    assert_eq!(
        code, 503,
        "not ready before the group assigned partitions: {body}"
    );
    assert!(body.contains("no partition assignment yet"), "{body}");
    let (code, body) = http_get(address, "/health/liveness").await;
    assert_eq!(code, 200, "alive from the start: {body}");

    wait_status(address, "/health/readiness", 200).await;
    let (code, health) = http_get(address, "/health").await;
    assert_eq!(code, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).expect("/health is JSON");
    assert_eq!(health["status"], "UP");
    assert_eq!(health["consumers"][0]["listener"], "probed");
    assert_eq!(health["consumers"][0]["group"], group.as_str());
    assert_eq!(health["consumers"][0]["joined"], true);

    let mock = embedded.mock_cluster().expect("mock cluster");
    mock.broker_down(1).expect("broker goes down");
    let body = wait_status(address, "/health/readiness", 503).await;
    assert!(body.contains("no broker connection"), "{body}");
    let (code, body) = http_get(address, "/health/liveness").await;
    assert_eq!(
        code, 200,
        "a lost broker is not a reason to restart: {body}"
    );

    mock.broker_up(1).expect("broker comes back");
    wait_status(address, "/health/readiness", 200).await;

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_and_show_lag_growing_while_the_handler_stalls() {
    let cluster = Cluster::start();
    let topic = cluster.topic("gated", 1);
    let group = common::unique("gated-group");
    let (gate, open) = watch::channel(true);
    let (running, address) = start(&cluster, "gated", &topic, &group, |app| {
        app.with_state(Gate(open))
    })
    .await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .expect("producer");
    let produce = |count: usize| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            for n in 0..count {
                let value = format!("record {n}");
                producer
                    .send(
                        FutureRecord::<(), _>::to(&topic).payload(&value),
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("record is produced");
            }
        }
    };
    let lag = |exposition: &str| {
        metric(
            exposition,
            "kafka_consumer_lag",
            &[("topic", &topic), ("partition", "0"), ("group", &group)],
        )
    };

    produce(5).await;
    cluster.wait_committed(&group, &topic, &[Some(5)]).await;
    wait_metrics(address, "lag 0 after 5 handled records", |m| {
        lag(m) == Some(0.0)
    })
    .await;

    gate.send_replace(false);
    produce(41).await;
    let stalled = wait_metrics(address, "lag 41 while the handler stalls", |m| {
        lag(m) == Some(41.0)
    })
    .await;
    let labels = [("listener", "gated"), ("topic", topic.as_str())];
    assert_eq!(
        metric(&stalled, "kafka_listener_records_handled_total", &labels),
        Some(5.0),
        "{stalled}"
    );
    let health = wait_health(address, |health| health["lag"]["status"] == "DEGRADED").await;
    assert_eq!(
        health["consumers"][0]["lag"][format!("{topic}-0")],
        41,
        "lag 41 > lag-alert-threshold 10 for two reports: {health}"
    );
    assert_eq!(
        health["status"], "UP",
        "lag degrades, it does not fail: {health}"
    );

    gate.send_replace(true);
    cluster.wait_committed(&group, &topic, &[Some(46)]).await;
    let drained = wait_metrics(address, "lag back to 0", |m| lag(m) == Some(0.0)).await;
    assert_eq!(
        metric(&drained, "kafka_listener_records_received_total", &labels),
        Some(46.0)
    );
    assert_eq!(
        metric(&drained, "kafka_listener_records_handled_total", &labels),
        Some(46.0)
    );
    assert_eq!(
        metric(&drained, "kafka_listener_records_failed_total", &labels),
        Some(0.0)
    );
    assert_eq!(
        metric(&drained, "kafka_listener_handler_seconds_count", &labels),
        Some(46.0)
    );
    let commits = metric(
        &drained,
        "kafka_consumer_commit_seconds_count",
        &[("listener", "gated")],
    )
    .expect("commit latency is recorded");
    assert!(
        commits >= 2.0,
        "at least the two commits waited on: {commits}"
    );
    wait_health(address, |health| health["lag"]["status"] == "OK").await;

    running.shutdown().await;
}
