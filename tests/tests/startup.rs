//! Listener registrations that cannot run fail at startup with an error that says how to fix
//! them, and a dead broker is reported rather than hung on.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use kafka_runtime::prelude::*;
use kafka_runtime::{Config, Error};

// With `ack_mode` written in the attribute these two are compile errors (tests/ui); with the
// ack mode from configuration (`kafka.listeners."<id>".ack-mode` below, or the default `batch`)
// startup refuses them.
#[kafka_listener(
    id = "manual_without_ack",
    topics = "t",
    group = "g",
    auto_startup = false
)]
async fn manual_without_ack(Payload(_value): Payload<String>) {}

#[kafka_listener(
    id = "ack_in_record_mode",
    topics = "t",
    group = "g",
    auto_startup = false
)]
async fn ack_in_record_mode(ack: Ack) {
    ack.acknowledge();
}

#[kafka_listener(
    id = "no_group",
    topics = "t",
    ack_mode = "record",
    auto_startup = false
)]
async fn no_group(Payload(_value): Payload<String>) {}

#[derive(Clone)]
struct Database;

#[kafka_listener(
    id = "needs_state",
    topics = "t",
    group = "g",
    ack_mode = "record",
    auto_startup = false
)]
async fn needs_state(State(_db): State<Database>) {}

#[kafka_listener(
    id = "unset_placeholder",
    topics = "${no.such.property}",
    group = "g",
    auto_startup = false
)]
async fn unset_placeholder(Payload(_value): Payload<String>) {}

async fn start_error(cluster: &Cluster, listener: &str) -> String {
    let result = cluster
        .application("[kafka.listeners.manual_without_ack]\nack-mode = \"manual\"\n")
        .with_listeners([listener])
        .start()
        .await;
    match result {
        Ok(app) => {
            app.shutdown().await;
            panic!("{listener} started");
        }
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misdeclared_listeners_fail_at_startup_with_a_fix() {
    let cluster = Cluster::start();
    let cases = [
        ("manual_without_ack", "needs an `Ack` argument"),
        ("ack_in_record_mode", "set ack_mode = \"manual\""),
        ("no_group", "no consumer group"),
        ("needs_state", "call .with_state(value)"),
        ("unset_placeholder", "NO_SUCH_PROPERTY"),
        ("no_such_listener", "no such listener"),
    ];
    for (listener, fix) in cases {
        let error = start_error(&cluster, listener).await;
        assert!(error.contains(listener), "{error}");
        assert!(error.contains(fix), "{listener}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_not_hung_on() {
    let config = Config::from_toml_str(
        "[kafka]\nbootstrap-servers = \"127.0.0.1:1\"\n",
        "test.toml",
    )
    .expect("config");
    let started = Instant::now();
    let result = KafkaApplication::new(config)
        .with_listeners(["needs_state"])
        .with_state(Database)
        .start()
        .await;
    let error = match result {
        Ok(app) => {
            app.shutdown().await;
            panic!("started without a broker");
        }
        Err(error) => error,
    };
    assert!(matches!(error, Error::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_topics_are_created_with_their_partitions() {
    let cluster = Cluster::start();
    let first = common::unique("declared");
    let second = common::unique("declared");
    let extra = format!(
        "[[kafka.topics]]\nname = \"{first}\"\npartitions = 4\nconfig = {{ \"retention.ms\" = 86400000 }}\n\n\
         [[kafka.topics]]\nname = \"{second}\"\n"
    );
    let app = cluster
        .application(&extra)
        .with_listeners(["needs_state"])
        .with_state(Database)
        .start()
        .await
        .expect("application starts");
    let partitions = |topic: &str| {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap())
            .create()
            .expect("client");
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        metadata.topics().first().map(|t| t.partitions().len())
    };
    assert_eq!(partitions(&first), Some(4));
    assert_eq!(partitions(&second), Some(1));
    app.shutdown().await;
}

// --- placeholders in typed attribute values ---------------------------------------------------

#[kafka_listener(
    id = "tunable",
    topics = "t",
    group = "g",
    concurrency = "${workers:2}",
    ack_mode = "${mode:record}",
    auto_startup = "${tunable.enabled:false}"
)]
async fn tunable(Payload(_value): Payload<String>) {}

fn check_with(properties: &[(&str, &str)], only: Option<&str>) -> Result<Vec<String>, Error> {
    let mut app = KafkaApplication::new(Config::default());
    for (name, value) in properties {
        app = app.with_property(*name, *value);
    }
    if let Some(id) = only {
        app = app.with_listeners([id]);
    }
    app.check()
}

#[test]
fn typed_attribute_values_take_placeholders_resolved_at_startup() {
    let lines = check_with(&[], Some("tunable")).expect("defaults resolve");
    assert!(
        lines[0].contains("concurrency 2, ack-mode record"),
        "{lines:?}"
    );
    let lines = check_with(&[("workers", "4"), ("mode", "batch")], Some("tunable"))
        .expect("properties resolve");
    assert!(
        lines[0].contains("concurrency 4, ack-mode batch"),
        "{lines:?}"
    );
    let error = check_with(&[("workers", "many")], Some("tunable"))
        .expect_err("not a number")
        .to_string();
    assert!(
        error.contains(
            "`concurrency = \"${workers:2}\"` resolved to `many`; expected a whole number"
        ),
        "{error}"
    );
    let started = |properties: &[(&str, &str)]| {
        check_with(properties, None)
            .expect("the auto-started listeners check")
            .iter()
            .any(|line| line.starts_with("listener tunable:"))
    };
    assert!(!started(&[]), "auto_startup defaults to false here");
    assert!(started(&[("tunable.enabled", "true")]));
}
