//! `KafkaTemplate`: delivery results, what arrives on the wire, batches and typed failures.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Cluster;
use kafka_runtime::{KafkaTemplate, SendError};
use rdkafka::message::{Headers as _, Message};
use rdkafka::types::RDKafkaRespErr;
use serde::Serialize;

#[derive(Serialize)]
struct UserEvent<'a> {
    event_type: &'a str,
    user_id: &'a str,
}

fn template(cluster: &Cluster, extra: &str) -> KafkaTemplate {
    let config = cluster.config(extra);
    KafkaTemplate::new(&config.kafka, cluster.bootstrap()).expect("template")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reports_where_the_record_landed_and_it_arrives_as_sent() {
    let cluster = Cluster::start();
    let topic = cluster.topic("send", 3);
    let template = template(&cluster, "");
    let event = UserEvent {
        event_type: "user_created",
        user_id: "123",
    };
    let first = template
        .send(&topic, "user-123", &event)
        .await
        .expect("delivered");
    let second = template
        .record(&topic)
        .key("user-123")
        .header("correlation_id", "abc-123")
        .partition(first.partition)
        .timestamp(1_700_000_000_000)
        .send(&event)
        .await
        .expect("delivered");
    assert_eq!(first.topic, topic);
    assert_eq!(second.partition, first.partition);
    assert_eq!(second.offset, first.offset + 1);

    let records = common::read_topic(cluster.bootstrap(), &topic, 2);
    let record = records
        .iter()
        .find(|r| r.offset() == second.offset)
        .expect("second record");
    assert_eq!(record.key(), Some(&b"user-123"[..]));
    assert_eq!(
        record.payload(),
        Some(&br#"{"event_type":"user_created","user_id":"123"}"#[..])
    );
    let headers = record.headers().expect("headers");
    let header = headers.iter().next().expect("one header");
    assert_eq!(
        (header.key, header.value),
        ("correlation_id", Some(&b"abc-123"[..]))
    );
    assert_eq!(record.timestamp().to_millis(), Some(1_700_000_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_batch_pipelines_ten_thousand_records() {
    let cluster = Cluster::start();
    let topic = cluster.topic("batch", 4);
    let template = template(
        &cluster,
        "[kafka.producer]\nacks = \"all\"\ncompression-type = \"gzip\"\n",
    );
    let items = (0..10_000u32).map(|n| (format!("key-{}", n % 100), n));
    let results = template.send_batch(&topic, items).await;
    assert_eq!(results.len(), 10_000);
    let mut offsets: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for result in results {
        let sent = result.expect("every record delivered");
        assert!(
            offsets
                .entry(sent.partition)
                .or_default()
                .insert(sent.offset),
            "offsets are unique"
        );
    }
    for (partition, set) in &offsets {
        let expected: BTreeSet<i64> = (0..i64::try_from(set.len()).expect("count")).collect();
        assert_eq!(
            set, &expected,
            "partition {partition} holds offsets 0..n without gaps"
        );
    }
    assert_eq!(offsets.values().map(BTreeSet::len).sum::<usize>(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_is_a_typed_error_not_a_panic() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        eprintln!("fault injection needs the mock cluster: covered by the embedded pass");
        return;
    };
    let topic = cluster.topic("refused", 1);
    embedded
        .mock_cluster()
        .expect("mock")
        .topic_error(
            &topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("error injected");
    let template = template(
        &cluster,
        "[kafka.producer.properties]\n\"message.timeout.ms\" = 3000\n",
    );
    let error = template.send(&topic, "k", "v").await.expect_err("refused");
    assert!(
        matches!(&error, SendError::Delivery { topic: t, .. } if *t == topic),
        "{error}"
    );
    assert!(error.to_string().contains(&topic), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_format_cannot_carry_is_an_encode_error() {
    let cluster = Cluster::start();
    let topic = cluster.topic("encode", 1);
    let template = template(&cluster, "[kafka.producer]\nvalue-serializer = \"bytes\"\n");
    let error = template
        .send(&topic, "k", &42u32)
        .await
        .expect_err("bytes cannot carry u32");
    assert!(
        matches!(error, SendError::Encode { part: "value", .. }),
        "{error}"
    );
    let sent = template
        .send(&topic, "k", &b"raw"[..])
        .await
        .expect("raw bytes are fine");
    assert_eq!(sent.offset, 0, "nothing was written by the failed send");
}
