//! Replies (Spring's `@SendTo`): a handler's return value sent to its `send_to` topic or to the
//! topic a request names, with the request's key and `kafka_correlationId`, acknowledged only
//! once the reply is delivered.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::{unique, Cluster, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::reply::{CORRELATION_ID_HEADER, REPLY_PARTITION_HEADER, REPLY_TOPIC_HEADER};
use kafka_runtime::ConsumerRecord;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    amount: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Priced {
    id: u64,
    total: u64,
}

/// Starts `listener` alone, with `extra` TOML and the properties its placeholders name.
async fn start(
    cluster: &Cluster,
    extra: &str,
    listener: &str,
    (topic, group, replies): (&str, &str, &str),
) -> kafka_runtime::RunningApplication {
    cluster
        .application(extra)
        .with_listeners([listener])
        .with_property("topic", topic)
        .with_property("group", group)
        .with_property("replies", replies)
        .start()
        .await
        .expect("application starts")
}

fn json<T: serde::de::DeserializeOwned>(record: &ConsumerRecord) -> T {
    serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON")
}

#[kafka_listener(
    id = "price",
    topics = "${topic}",
    group = "${group}",
    send_to = "${replies}",
    auto_startup = false
)]
async fn price(Payload(order): Payload<Order>) -> Result<Priced, HandlerError> {
    Ok(Priced {
        id: order.id,
        total: order.amount * 2,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_listener_replies_with_the_requests_key_and_correlation_id() {
    let cluster = Cluster::start();
    let (topic, replies) = (cluster.topic("orders", 2), cluster.topic("priced", 2));
    let group = unique("pricing");
    let app = start(&cluster, "", "price", (&topic, &group, &replies)).await;
    let kafka = cluster.kit();
    for id in 0..3u64 {
        kafka
            .record(&topic)
            .key(format!("order-{id}"))
            .header(CORRELATION_ID_HEADER, [id as u8; 16])
            .header("correlation_id", format!("trace-{id}"))
            .json(&serde_json::json!({ "id": id, "amount": 10 * id }))
            .await;
    }

    let mut replied = kafka.read(&replies, 3, PATIENCE).await;
    replied.sort_by_key(|record| record.key.clone());
    for (id, reply) in (0..3u64).zip(&replied) {
        assert_eq!(json::<Priced>(reply), Priced { id, total: 20 * id });
        let key = format!("order-{id}");
        assert_eq!(
            reply.key.as_deref(),
            Some(key.as_bytes()),
            "the request's key"
        );
        assert_eq!(
            reply.header(CORRELATION_ID_HEADER),
            Some(&[id as u8; 16][..]),
            "Spring's correlation id, as it came"
        );
        let trace = format!("trace-{id}");
        assert_eq!(
            reply.header("correlation_id"),
            Some(trace.as_bytes()),
            "the inherited correlation id"
        );
    }
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    app.shutdown().await;
}

/// Answers where the request asks; `None` (an empty order) answers nothing.
#[kafka_listener(
    id = "echo",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn echo(Payload(text): Payload<String>) -> Option<String> {
    (!text.is_empty()).then(|| text.to_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_its_reply_topic_and_partition_is_answered_there_and_only_there() {
    let cluster = Cluster::start();
    let (topic, replies) = (cluster.topic("requests", 1), cluster.topic("answers", 3));
    let group = unique("echo");
    let app = cluster
        .start_listener("", "echo", (&topic, &group), ())
        .await;
    let kafka = cluster.kit();
    kafka
        .record(&topic)
        .header(REPLY_TOPIC_HEADER, &replies)
        .header(REPLY_PARTITION_HEADER, 2i32.to_be_bytes())
        .text("hello")
        .await;
    // No reply topic: nothing to answer; an empty text: no reply.
    kafka.record(&topic).text("unanswered").await;
    kafka
        .record(&topic)
        .header(REPLY_TOPIC_HEADER, &replies)
        .text("")
        .await;
    // A crafted partition header is ignored, not trusted.
    kafka
        .record(&topic)
        .header(REPLY_TOPIC_HEADER, &replies)
        .header(REPLY_PARTITION_HEADER, [0xff, 0xff])
        .text("world")
        .await;

    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, vec![Some(4)]);
    let answers = kafka.read(&replies, 2, PATIENCE).await;
    let hello = answers
        .iter()
        .find(|record| record.value.as_deref() == Some(&b"HELLO"[..]))
        .expect("HELLO answered");
    assert_eq!(hello.partition, 2, "the partition the request asked for");
    assert!(answers
        .iter()
        .any(|record| record.value.as_deref() == Some(&b"WORLD"[..])));
    let end: i64 = kafka.end_offsets(&replies).await.iter().sum();
    assert_eq!(end, 2, "no other reply");
    app.shutdown().await;
}

/// Each line its own reply; a line starting with `@` goes to the topic it names with its own key.
#[kafka_listener(
    id = "split",
    topics = "${topic}",
    group = "${group}",
    send_to = "${replies}",
    auto_startup = false
)]
async fn split(Payload(text): Payload<String>) -> Vec<Reply<String>> {
    text.lines()
        .map(|line| match line.strip_prefix('@') {
            Some(topic) => Reply::new(line.to_owned())
                .topic(topic)
                .key("routed")
                .header("routed", "yes"),
            None => Reply::new(line.to_owned()),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vec_is_one_reply_per_element_and_a_reply_record_sets_its_own_key_and_topic() {
    let cluster = Cluster::start();
    let (topic, replies, routed) = (
        cluster.topic("lines", 1),
        cluster.topic("split", 1),
        cluster.topic("routed", 1),
    );
    let group = unique("split");
    let app = start(&cluster, "", "split", (&topic, &group, &replies)).await;
    let kafka = cluster.kit();
    kafka
        .record(&topic)
        .key("k")
        .text(&format!("one\ntwo\n@{routed}"))
        .await;
    let lines = kafka.read(&replies, 2, PATIENCE).await;
    let texts: Vec<_> = lines.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(texts, [b"one".to_vec(), b"two".to_vec()], "in order");
    assert!(lines.iter().all(|r| r.key.as_deref() == Some(&b"k"[..])));
    let other = kafka.read(&routed, 1, PATIENCE).await;
    assert_eq!(other[0].key.as_deref(), Some(&b"routed"[..]));
    assert_eq!(other[0].header("routed"), Some(&b"yes"[..]));
    app.shutdown().await;
}

static SENDS: AtomicU32 = AtomicU32::new(0);

/// Acknowledges, then replies to a partition that does not exist.
#[kafka_listener(
    id = "unanswerable",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    send_to = "${replies}",
    auto_startup = false
)]
async fn unanswerable(Payload(text): Payload<String>, ack: Ack) -> Reply<String> {
    SENDS.fetch_add(1, Ordering::SeqCst);
    ack.acknowledge();
    Reply::new(text).partition(99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_is_not_delivered_fails_the_request_even_after_its_ack() {
    let cluster = Cluster::start();
    let (topic, replies) = (cluster.topic("asks", 1), cluster.topic("nowhere", 1));
    let group = unique("unanswerable");
    let errors = r#"
[kafka.listener.error-handler]
max-attempts = 2
recoverer = "dead-letter"
initial-interval = "10ms"
"#;
    let app = start(&cluster, errors, "unanswerable", (&topic, &group, &replies)).await;
    let kafka = cluster.kit();
    kafka.record(&topic).text("question").await;
    let dead = kafka
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    let reason = dead[0].exception_message.clone().unwrap_or_default();
    assert!(reason.contains("a reply was not sent"), "{reason}");
    assert_eq!(
        SENDS.load(Ordering::SeqCst),
        2,
        "the ack did not settle the request: it was delivered again"
    );
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    app.shutdown().await;
}

static SHOUTS: AtomicU32 = AtomicU32::new(0);

/// Replies with the text in capitals.
#[kafka_listener(
    id = "shout",
    topics = "${topic}",
    group = "${group}",
    send_to = "${replies}",
    auto_startup = false
)]
async fn shout(Payload(text): Payload<String>) -> String {
    SHOUTS.fetch_add(1, Ordering::SeqCst);
    text.to_uppercase()
}

/// The container reads on while replies are on their way (the record is acknowledged when its
/// reply is delivered): a reply the broker refuses after the handler returned still fails its
/// request, which is delivered again, and nothing is committed past it before its reply is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_the_broker_refuses_after_the_handler_returned_fails_its_request() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let (topic, replies) = (cluster.topic("shouts", 1), cluster.topic("shouted", 1));
    let group = unique("shout");
    let kafka = cluster.kit();
    for text in ["a", "b", "c"] {
        kafka.record(&topic).text(text).await;
    }
    // Only the application produces from here on: its first reply request is refused, with an
    // error the producer does not retry (and, unlike an authorization error, does not remember
    // for the topic).
    embedded.mock_cluster().expect("mock").request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    let errors = r#"
[kafka.listener.error-handler]
max-attempts = 3
recoverer = "dead-letter"
initial-interval = "10ms"
"#;
    let app = start(&cluster, errors, "shout", (&topic, &group, &replies)).await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, vec![Some(3)]);
    assert!(
        SHOUTS.load(Ordering::SeqCst) > 3,
        "the request whose reply was refused was handled again"
    );
    let sent: i64 = kafka.end_offsets(&replies).await.iter().sum();
    let answers = kafka
        .read(&replies, usize::try_from(sent).expect("count"), PATIENCE)
        .await;
    for text in ["A", "B", "C"] {
        assert!(
            answers
                .iter()
                .any(|record| record.value.as_deref() == Some(text.as_bytes())),
            "{text} answered: {answers:?}"
        );
    }
    app.shutdown().await;
}

static WHISPERS: AtomicU32 = AtomicU32::new(0);

/// Replies with the text in lower case.
#[kafka_listener(
    id = "whisper",
    topics = "${topic}",
    group = "${group}",
    send_to = "${replies}",
    auto_startup = false
)]
async fn whisper(Payload(text): Payload<String>) -> String {
    WHISPERS.fetch_add(1, Ordering::SeqCst);
    text.to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_replies_the_broker_refuses_every_time_is_dead_lettered() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        return;
    };
    let (topic, replies) = (cluster.topic("whispers", 1), cluster.topic("whispered", 1));
    let group = unique("whisper");
    let kafka = cluster.kit();
    kafka.record(&topic).text("HUSH").await;
    // Both deliveries' replies are refused; the dead letter goes through.
    embedded.mock_cluster().expect("mock").request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 2],
    );
    let errors = r#"
[kafka.listener.error-handler]
max-attempts = 2
recoverer = "dead-letter"
initial-interval = "10ms"
"#;
    let app = start(&cluster, errors, "whisper", (&topic, &group, &replies)).await;
    let dead = kafka
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    let reason = dead[0].exception_message.clone().unwrap_or_default();
    assert!(reason.contains("a reply was not sent"), "{reason}");
    assert_eq!(dead[0].record.value.as_deref(), Some(&b"HUSH"[..]));
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(
        WHISPERS.load(Ordering::SeqCst),
        2,
        "handled twice, then recovered without a third call"
    );
    assert_eq!(kafka.end_offsets(&replies).await, vec![0], "no reply");
    app.shutdown().await;
}

#[tokio::test]
async fn a_handler_test_sees_the_replies_without_a_broker() {
    use kafka_runtime::test::{Outcome, TestHandler, TestRecord};
    let mut handler = TestHandler::new("price")
        .with_property("topic", "orders")
        .with_property("group", "pricing")
        .with_property("replies", "orders.priced");
    let handled = handler
        .handle(
            TestRecord::json(&serde_json::json!({ "id": 7, "amount": 5 }))
                .key("order-7")
                .header(CORRELATION_ID_HEADER, "c-7"),
        )
        .await;
    assert!(matches!(handled.outcome, Outcome::Acknowledged));
    let [reply] = &handled.sent[..] else {
        panic!("one reply: {:?}", handled.sent)
    };
    assert_eq!(reply.topic, "orders.priced");
    assert_eq!(reply.key.as_deref(), Some(&b"order-7"[..]));
    assert_eq!(reply.value.as_deref(), Some(&br#"{"id":7,"total":10}"#[..]));
    assert!(reply
        .headers
        .contains(&(CORRELATION_ID_HEADER.to_owned(), b"c-7".to_vec())));
}

// --- request/reply (ReplyingKafkaTemplate) ----------------------------------------------------

/// Answers where each request asks (no `send_to`); an order without an amount gets an error reply.
#[kafka_listener(
    id = "quote",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn quote(Payload(order): Payload<Order>) -> Reply<Priced> {
    if order.amount == 0 {
        return Reply::error(format!("order {} has no amount", order.id));
    }
    Reply::new(Priced {
        id: order.id,
        total: order.amount * 2,
    })
}

fn replying(replies: &str) -> String {
    format!("[kafka.template]\nreply-topic = \"{replies}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_many_concurrent_requests_gets_its_own_reply() {
    let cluster = Cluster::start();
    let topic = cluster.topic("quotes", 3);
    let (group, replies) = (unique("quote"), unique("quote-replies"));
    let app = start(&cluster, &replying(&replies), "quote", (&topic, &group, "")).await;
    let template = app.template();
    let mut requests = tokio::task::JoinSet::new();
    for id in 1..=60u64 {
        let (template, topic) = (template.clone(), topic.clone());
        requests.spawn(async move {
            let reply = template
                .record(&topic)
                .key(&format!("order-{id}"))
                .send_and_receive(&serde_json::json!({ "id": id, "amount": id }), PATIENCE)
                .await
                .unwrap_or_else(|error| panic!("request {id}: {error}"));
            (id, json::<Priced>(&reply))
        });
    }
    let mut answered = 0;
    while let Some(done) = requests.join_next().await {
        let (id, priced) = done.expect("the request's task ends");
        assert_eq!(
            priced,
            Priced { id, total: 2 * id },
            "the reply to request {id}"
        );
        answered += 1;
    }
    assert_eq!(answered, 60);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_a_missing_reply_and_a_missing_reply_topic_are_typed_errors() {
    use kafka_runtime::reply::RequestError;
    let cluster = Cluster::start();
    let (topic, unanswered) = (cluster.topic("quotes", 1), cluster.topic("unanswered", 1));
    let (group, replies) = (unique("quote"), unique("quote-replies"));
    let app = start(&cluster, &replying(&replies), "quote", (&topic, &group, "")).await;
    let template = app.template();

    let error = template
        .record(&topic)
        .send_and_receive(&serde_json::json!({ "id": 9, "amount": 0 }), PATIENCE)
        .await
        .expect_err("an error reply");
    match error {
        RequestError::Remote { message, .. } => assert_eq!(message, "order 9 has no amount"),
        other => panic!("expected a remote error, got {other}"),
    }

    let started = std::time::Instant::now();
    let timeout = std::time::Duration::from_millis(500);
    let error = template
        .record(&unanswered)
        .send_and_receive("anyone?", timeout)
        .await
        .expect_err("nobody answers");
    assert!(
        matches!(error, RequestError::Timeout { after, .. } if after == timeout),
        "{error}"
    );
    assert!(started.elapsed() < timeout * 4, "gave up at the timeout");
    app.shutdown().await;

    let plain = cluster.start_without_listeners("").await;
    let error = plain
        .template()
        .record(&topic)
        .send_and_receive("no reply topic", timeout)
        .await
        .expect_err("no reply topic");
    assert!(matches!(error, RequestError::NoReplyTopic), "{error}");
    plain.shutdown().await;
}
