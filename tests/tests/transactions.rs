//! Transactions (`producer.transaction-id-prefix`): what a listener's handler sends and the
//! offsets it consumed commit together, or abort together when it fails; the template's own
//! transactions.
//!
//! What the backends can show (measured): librdkafka's mock cluster runs the transaction APIs
//! but neither keeps transactional offsets nor hides aborted records from `read_committed`
//! readers; the transaction-capable tansu build (`scripts/broker.sh start-txn`) keeps the
//! offsets but does not hide aborted records either. So these tests assert the commits where
//! the broker keeps them, every attempt's output where it cannot hide aborted ones, and
//! exactly one output per input where it can ([`hides_aborted`] finds out).

mod common;

use std::time::Duration;

use common::{unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::InTransactionError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const TRANSACTIONAL: &str = r#"
[kafka.producer]
transaction-id-prefix = "tx-"

[kafka.listener.error-handler]
max-attempts = 3
recoverer = "dead-letter"
"#;

#[derive(Clone, Default)]
struct Forwarding {
    output: String,
    calls: Recorder<String>,
}

/// Forwards each text upper-cased to the output topic, sending first; `fail` fails on its
/// first two deliveries, `poison` on every one.
#[kafka_listener(
    id = "forward",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn forward(
    Payload(text): Payload<String>,
    Key(key): Key<String>,
    template: KafkaTemplate,
    State(forwarding): State<Forwarding>,
) -> Result<(), HandlerError> {
    template
        .send(&forwarding.output, &key, &text.to_uppercase())
        .await?;
    forwarding.calls.push(text.clone());
    let calls = forwarding.calls.snapshot();
    match text.as_str() {
        "fail" if calls.iter().filter(|t| *t == "fail").count() <= 2 => {
            Err(HandlerError::new("failing twice"))
        }
        "poison" => Err(HandlerError::new("never works")),
        _ => Ok(()),
    }
}

/// Every value of partition 0 of `topic` as a reader with `isolation` sees it (assigned, no
/// group: a group join takes seconds on tansu), sorted.
fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut partitions = rdkafka::TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition 0");
    consumer.assign(&partitions).expect("assigned");
    let mut values = Vec::new();
    let mut quiet = std::time::Instant::now();
    // Until nothing came for 2 s.
    while quiet.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
            quiet = std::time::Instant::now();
        }
    }
    values.sort();
    values
}

/// Whether the broker hides a transaction's records from `read_committed` readers once it was
/// aborted (the record is flushed to the broker before the abort).
fn hides_aborted(cluster: &Cluster) -> bool {
    let topic = cluster.topic("probe", 1);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("transactional.id", unique("probe"))
        .create()
        .expect("producer");
    let timeout = Duration::from_secs(10);
    producer.init_transactions(timeout).expect("init");
    producer.begin_transaction().expect("begin");
    producer
        .send(BaseRecord::<str, str>::to(&topic).payload("aborted"))
        .expect("send");
    producer.flush(timeout).expect("flush");
    producer.abort_transaction(timeout).expect("abort");
    producer.begin_transaction().expect("begin");
    producer
        .send(BaseRecord::<str, str>::to(&topic).payload("committed"))
        .expect("send");
    producer.commit_transaction(timeout).expect("commit");
    let seen = read_all(cluster.bootstrap(), &topic, "read_committed");
    eprintln!("read_committed reader of an aborted and a committed record saw {seen:?}");
    seen == ["committed"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_aborts_its_transaction_and_the_records_are_handled_again() {
    let cluster = Cluster::start();
    let (topic, output) = (cluster.topic("tx-in", 1), cluster.topic("tx-out", 1));
    let group = unique("forward");
    let forwarding = Forwarding {
        output: output.clone(),
        calls: Recorder::default(),
    };
    let app = cluster
        .start_listener(
            TRANSACTIONAL,
            "forward",
            (&topic, &group),
            forwarding.clone(),
        )
        .await;
    let kafka = cluster.kit();
    for text in ["a", "fail", "b", "poison", "c"] {
        kafka.record(&topic).key(text).text(text).await;
    }
    let dead = kafka
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE * 3)
        .await;
    assert_eq!(dead[0].record.value.as_deref(), Some(&b"poison"[..]));
    assert_eq!(
        dead[0].exception_message.as_deref(),
        Some("never works"),
        "dead-lettered after its last attempt, in the next transaction"
    );
    if cluster.embedded().is_none() {
        // The mock cluster does not keep transactional offsets.
        kafka.wait_committed(&group, &topic, PATIENCE).await;
    }
    app.shutdown().await;
    let calls = forwarding.calls.snapshot();
    let count = |text: &str| calls.iter().filter(|call| *call == text).count();
    assert_eq!(count("fail"), 3, "two failures, then success: {calls:?}");
    assert_eq!(count("poison"), 3, "max-attempts: {calls:?}");
    assert!(
        count("c") >= 1 && count("a") >= 1 && count("b") >= 1,
        "{calls:?}"
    );

    let hides = hides_aborted(&cluster);
    let visible = read_all(cluster.bootstrap(), &output, "read_committed");
    if hides {
        assert_eq!(
            visible,
            ["A", "B", "C", "FAIL"],
            "each input's output once: none of the aborted attempts', none of the poison's"
        );
    } else {
        // Every attempt sent its output before it failed: all were sent, none was lost.
        assert_eq!(visible.len(), calls.len(), "{visible:?} for {calls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_own_transaction_commits_on_ok_and_aborts_on_err() {
    let cluster = Cluster::start();
    let topic = cluster.topic("tx-template", 1);
    let app = cluster.start_without_listeners(TRANSACTIONAL).await;
    let template = app.template().clone();
    let sent = template
        .in_transaction(|| async {
            template.send(&topic, "k", "first").await?;
            template.send(&topic, "k", "second").await
        })
        .await
        .expect("committed");
    assert_eq!(sent.offset, 1, "both in one transaction, in order");
    let aborted = template
        .in_transaction(|| async {
            template.send(&topic, "k", "aborted").await?;
            Err::<(), _>(HandlerError::new("changed my mind"))
        })
        .await
        .expect_err("aborted");
    assert!(
        matches!(aborted, InTransactionError::Aborted(_)),
        "{aborted}"
    );
    app.shutdown().await;

    let hides = hides_aborted(&cluster);
    let visible = read_all(cluster.bootstrap(), &topic, "read_committed");
    let expected: &[&str] = if hides {
        &["first", "second"]
    } else {
        &["aborted", "first", "second"]
    };
    assert_eq!(visible, expected);

    let plain = cluster.start_without_listeners("").await;
    let refused = plain
        .template()
        .in_transaction(|| async { Ok::<_, HandlerError>(()) })
        .await
        .expect_err("no prefix");
    assert!(
        matches!(refused, InTransactionError::NotTransactional),
        "{refused}"
    );
    plain.shutdown().await;
}

#[kafka_listener(
    id = "manual_tx",
    topics = "t",
    group = "g",
    ack_mode = "manual",
    auto_startup = false
)]
async fn manual_tx(ack: Ack) {
    ack.acknowledge();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_refuse_what_they_cannot_keep_atomic() {
    let cluster = Cluster::start();
    let error = cluster
        .application(TRANSACTIONAL)
        .with_listeners(["manual_tx"])
        .start()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("transactions (producer.transaction-id-prefix) are for record listeners")
            && error.contains("not with this ack mode"),
        "{error}"
    );
}
