//! Error handling: back-off between deliveries, Spring-compatible dead-letter topics, poison
//! messages, and a dead-letter publication that fails without losing the record.

mod common;

use std::time::{Duration, Instant};

use common::{header, read_topic, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::RunningApplication;
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
}

async fn start(
    cluster: &Cluster,
    extra: &str,
    listener: &str,
    topic: &str,
    group: &str,
    seen: &Recorder<(u32, Instant)>,
) -> RunningApplication {
    cluster
        .application(extra)
        .with_listeners([listener])
        .with_property("topic", topic)
        .with_property("group", group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts")
}

// --- exponential back-off --------------------------------------------------------------------

#[kafka_listener(
    id = "backs_off",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn backs_off(
    State(seen): State<Recorder<(u32, Instant)>>,
    DeliveryAttempt(attempt): DeliveryAttempt,
) -> Result<(), HandlerError> {
    seen.push((attempt, Instant::now()));
    Err(HandlerError::new("always fails"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_back_off_spaces_the_deliveries_then_the_record_is_skipped() {
    let cluster = Cluster::start();
    let topic = cluster.topic("backoff", 1);
    let group = unique("backoff");
    let seen = Recorder::<(u32, Instant)>::default();
    let extra = r#"
[kafka.listeners.backs_off.error-handler]
back-off = "exponential"
initial-interval = "200ms"
multiplier = 2.0
max-interval = "1s"
max-attempts = 4
"#;
    let app = start(&cluster, extra, "backs_off", &topic, &group, &seen).await;
    app.template()
        .send_value(&topic, "x")
        .await
        .expect("delivered");
    let deliveries = seen.wait_for(4).await;
    assert_eq!(
        deliveries.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let gaps: Vec<Duration> = deliveries.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for (gap, wanted) in gaps.iter().zip([200, 400, 800]) {
        assert!(*gap >= Duration::from_millis(wanted), "gaps {gaps:?}");
        assert!(*gap < Duration::from_millis(wanted + 1500), "gaps {gaps:?}");
    }
    // recoverer = log (the default): skipped, so committed.
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 4, "no fifth delivery");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_back_off_spaces_the_deliveries_by_its_interval() {
    let cluster = Cluster::start();
    let topic = cluster.topic("fixed-backoff", 1);
    let group = unique("fixed-backoff");
    let seen = Recorder::<(u32, Instant)>::default();
    let extra = r#"
[kafka.listeners.backs_off.error-handler]
interval = "100ms"
max-attempts = 5
"#;
    let app = start(&cluster, extra, "backs_off", &topic, &group, &seen).await;
    cluster.kit().record(&topic).text("x").await;
    let deliveries = seen.wait_for(5).await;
    let gaps: Vec<Duration> = deliveries.windows(2).map(|w| w[1].1 - w[0].1).collect();
    eprintln!("gaps {gaps:?}");
    for gap in &gaps {
        assert!(*gap >= Duration::from_millis(100), "gaps {gaps:?}");
        assert!(*gap < Duration::from_millis(250), "gaps {gaps:?}");
    }
    app.shutdown().await;
}

// --- dead-letter topic with Spring's headers -------------------------------------------------

#[kafka_listener(
    id = "dead_letters",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn dead_letters(
    Payload(event): Payload<UserEvent>,
    DeliveryAttempt(attempt): DeliveryAttempt,
    ack: Ack,
    State(seen): State<Recorder<(u32, Instant)>>,
) -> Result<(), HandlerError> {
    seen.push((attempt, Instant::now()));
    match event.event_type.as_str() {
        "poison" => Err(std::io::Error::other("cannot process poison").into()),
        "invalid" => Err(HandlerError::non_retryable("user_id is not a number")),
        _ => {
            ack.acknowledge();
            Ok(())
        }
    }
}

const DEAD_LETTER: &str = r#"
[kafka.listener.error-handler]
max-attempts = 3
recoverer = "dead-letter"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_attempt_the_record_goes_to_the_dlt_with_springs_headers() {
    let cluster = Cluster::start();
    let topic = cluster.topic("dlt", 3);
    let group = unique("dlt");
    let seen = Recorder::<(u32, Instant)>::default();
    let app = start(&cluster, DEAD_LETTER, "dead_letters", &topic, &group, &seen).await;
    let poison = UserEvent {
        event_type: "poison".into(),
        user_id: "1".into(),
    };
    let sent = app
        .template()
        .record(&topic)
        .key("user-1")
        .header("correlation_id", "abc-1")
        .partition(2)
        .timestamp(1_700_000_000_000)
        .send(&poison)
        .await
        .expect("delivered");

    let dead = read_topic(cluster.bootstrap(), &format!("{topic}.DLT"), 1);
    assert_eq!(dead.len(), 1, "one dead letter");
    let dead = &dead[0];
    assert_eq!(seen.len(), 3, "three deliveries, then the recoverer");
    assert_eq!(dead.partition(), 2, "same partition as the original");
    assert_eq!(dead.key(), Some(&b"user-1"[..]));
    assert_eq!(
        dead.payload(),
        Some(&br#"{"event_type":"poison","user_id":"1"}"#[..])
    );
    assert_eq!(
        header(dead, "correlation_id"),
        Some(&b"abc-1"[..]),
        "original headers kept"
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-topic"),
        Some(topic.as_bytes())
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-partition"),
        Some(&2i32.to_be_bytes()[..])
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-offset"),
        Some(&sent.offset.to_be_bytes()[..])
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-timestamp"),
        Some(&1_700_000_000_000i64.to_be_bytes()[..])
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-timestamp-type"),
        Some(&b"CreateTime"[..])
    );
    assert_eq!(
        header(dead, "kafka_dlt-original-consumer-group"),
        Some(group.as_bytes())
    );
    assert_eq!(
        header(dead, "kafka_dlt-exception-fqcn"),
        Some(&b"std::io::error::Error"[..])
    );
    assert_eq!(
        header(dead, "kafka_dlt-exception-message"),
        Some(&b"cannot process poison"[..])
    );
    let stacktrace = String::from_utf8_lossy(
        header(dead, "kafka_dlt-exception-stacktrace").expect("stacktrace"),
    );
    assert!(
        stacktrace.starts_with("std::io::error::Error: cannot process poison"),
        "{stacktrace}"
    );
    let expected = [None, None, Some(sent.offset + 1)];
    assert_eq!(
        cluster.wait_committed(&group, &topic, &expected).await,
        expected
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_goes_to_the_dlt_at_once() {
    let cluster = Cluster::start();
    let topic = cluster.topic("nonretry", 1);
    let group = unique("nonretry");
    let seen = Recorder::<(u32, Instant)>::default();
    let app = start(&cluster, DEAD_LETTER, "dead_letters", &topic, &group, &seen).await;
    let invalid = UserEvent {
        event_type: "invalid".into(),
        user_id: "x".into(),
    };
    app.template()
        .send(&topic, "user-x", &invalid)
        .await
        .expect("delivered");
    let dead = cluster
        .kit()
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    assert_eq!(seen.len(), 1, "no retry for a non-retryable error");
    assert_eq!(
        dead[0].exception_message.as_deref(),
        Some("user_id is not a number")
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_goes_to_the_dlt_with_its_raw_bytes_and_the_reason() {
    let cluster = Cluster::start();
    let topic = cluster.topic("undecodable", 1);
    let group = unique("undecodable");
    let seen = Recorder::<(u32, Instant)>::default();
    let app = start(&cluster, DEAD_LETTER, "dead_letters", &topic, &group, &seen).await;
    app.template()
        .send(&topic, "user-2", &b"\xffnot json"[..])
        .await
        .expect("delivered");
    let fine = UserEvent {
        event_type: "user_created".into(),
        user_id: "3".into(),
    };
    app.template()
        .send(&topic, "user-3", &fine)
        .await
        .expect("delivered");

    let dead = cluster
        .kit()
        .dead_letters(&format!("{topic}.DLT"), 1, PATIENCE)
        .await;
    assert_eq!(
        dead[0].record.value.as_deref(),
        Some(&b"\xffnot json"[..]),
        "the raw bytes, undecoded"
    );
    assert_eq!(
        dead[0].exception_type.as_deref(),
        Some("kafka_runtime::extract::Rejection")
    );
    let message = dead[0].exception_message.as_deref().unwrap_or_default();
    assert!(
        message.contains("Payload") && message.contains("UserEvent"),
        "{message}"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(2)]).await,
        [Some(2)]
    );
    assert_eq!(seen.len(), 1, "only the good record reached the handler");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dlt_publication_leaves_the_record_uncommitted() {
    let cluster = Cluster::start();
    let Some(embedded) = cluster.embedded() else {
        eprintln!("fault injection needs the mock cluster: covered by the embedded pass");
        return;
    };
    let topic = cluster.topic("dltdown", 1);
    let dead_letter_topic = format!("{topic}.DLT");
    cluster
        .embedded()
        .expect("embedded")
        .create_topic(&dead_letter_topic, 1)
        .expect("DLT");
    embedded
        .mock_cluster()
        .expect("mock")
        .topic_error(
            &dead_letter_topic,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("error injected");
    let group = unique("dltdown");
    let seen = Recorder::<(u32, Instant)>::default();
    let extra =
        format!("{DEAD_LETTER}\n[kafka.producer.properties]\n\"message.timeout.ms\" = 2000\n");
    let app = start(&cluster, &extra, "dead_letters", &topic, &group, &seen).await;
    let poison = UserEvent {
        event_type: "poison".into(),
        user_id: "1".into(),
    };
    app.template()
        .send(&topic, "user-1", &poison)
        .await
        .expect("delivered");
    seen.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        cluster.committed(&group, &topic, 1),
        [None],
        "not committed while the DLT refuses it"
    );
    assert_eq!(
        seen.len(),
        3,
        "the handler is not called again; only the recoverer retries"
    );
    app.shutdown().await;
}

// --- non-blocking retries through retry topics -------------------------------------------------

#[kafka_listener(
    id = "retry_topics",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "record",
    auto_startup = false
)]
async fn retry_topics(
    Payload(value): Payload<String>,
    metadata: Metadata,
    State(seen): State<Recorder<(String, String, Instant)>>,
) -> Result<(), HandlerError> {
    seen.push((value.clone(), metadata.topic.to_string(), Instant::now()));
    if value == "poison" {
        return Err(HandlerError::new("cannot process"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_topics_retry_without_blocking_the_partition_then_dead_letter() {
    let cluster = Cluster::start();
    let topic = cluster.topic("nonblocking", 2);
    let group = unique("nonblocking");
    let seen = Recorder::<(String, String, Instant)>::default();
    let extra = r#"
[kafka.listeners.retry_topics.retry-topic]
enabled = true
attempts = 3
delay = "400ms"
"#;
    let app = cluster
        .application(extra)
        .with_listeners(["retry_topics"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts");
    let poison = app
        .template()
        .record(&topic)
        .partition(1)
        .send("poison")
        .await
        .expect("delivered");
    app.template()
        .record(&topic)
        .partition(1)
        .send("fine")
        .await
        .expect("delivered");

    let dead = read_topic(cluster.bootstrap(), &format!("{topic}-dlt"), 1);
    assert_eq!(dead.len(), 1, "the record ends in <topic>-dlt");
    let seen = seen.snapshot();
    let topics: Vec<&str> = seen
        .iter()
        .filter(|(v, _, _)| v == "poison")
        .map(|(_, t, _)| t.as_str())
        .collect();
    let expected = [
        topic.clone(),
        format!("{topic}-retry-0"),
        format!("{topic}-retry-1"),
    ];
    assert_eq!(
        topics,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let at = |wanted: &str| {
        seen.iter()
            .find(|(v, t, _)| v == "poison" && t == wanted)
            .map(|(_, _, at)| *at)
    };
    let (first, second, third) = (at(&expected[0]), at(&expected[1]), at(&expected[2]));
    let (first, second, third) = (first.expect("1"), second.expect("2"), third.expect("3"));
    assert!(
        second - first >= Duration::from_millis(400),
        "due time respected"
    );
    assert!(
        third - second >= Duration::from_millis(400),
        "due time respected"
    );
    let fine = seen
        .iter()
        .find(|(v, _, _)| v == "fine")
        .map(|(_, _, at)| *at)
        .expect("fine handled");
    assert!(
        fine < second,
        "the source partition did not wait for the retries"
    );

    assert_eq!(dead[0].partition(), 1, "same partition number");
    assert_eq!(dead[0].payload(), Some(&b"poison"[..]));
    assert_eq!(
        header(&dead[0], "kafka_dlt-exception-message"),
        Some(&b"cannot process"[..])
    );
    assert_eq!(
        header(&dead[0], "retry_topic-attempts"),
        Some(&3i32.to_be_bytes()[..]),
        "Spring's attempts header travels with the record"
    );
    assert!(header(&dead[0], "retry_topic-backoff-timestamp").is_some());
    let expected_committed = [None, Some(poison.offset + 2)];
    assert_eq!(
        cluster
            .wait_committed(&group, &topic, &expected_committed)
            .await,
        expected_committed
    );
    app.shutdown().await;
}

// --- one log line per failed delivery ---------------------------------------------------------

/// Fails `fail`, drops its `Ack` and returns `Ok` on `forget`, acknowledges the rest.
#[kafka_listener(
    id = "ack_holder",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn ack_holder(
    Payload(_event): Payload<UserEvent>,
    Key(key): Key<String>,
    ack: Ack,
) -> Result<(), HandlerError> {
    match key.as_str() {
        "fail" => Err(HandlerError::non_retryable("refused")),
        "forget" => {
            drop(ack);
            Ok(())
        }
        _ => {
            ack.acknowledge();
            Ok(())
        }
    }
}

/// The lines a test's own subscriber wrote.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Lines {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lines")).into_owned()
    }
}

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

// One thread: the partition tasks log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_or_rejected_delivery_does_not_warn_of_a_dropped_ack_a_forgotten_one_does() {
    let lines = Lines::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(lines.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let cluster = Cluster::start();
    let topic = cluster.topic("ackdrop", 1);
    let group = unique("ackdrop");
    let app = start(
        &cluster,
        "",
        "ack_holder",
        &topic,
        &group,
        &Recorder::default(),
    )
    .await;
    let kafka = cluster.kit();
    let event = UserEvent {
        event_type: "user_created".into(),
        user_id: "1".into(),
    };
    kafka.record(&topic).key("fail").json(&event).await;
    kafka.record(&topic).key("bad").bytes("not json").await;
    kafka.record(&topic).key("fine").json(&event).await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    let logged = lines.text();
    assert!(
        !logged.contains("Ack dropped"),
        "a failed and a rejected delivery say what failed, not that an Ack was dropped:\n{logged}"
    );

    kafka.record(&topic).key("forget").json(&event).await;
    let deadline = Instant::now() + PATIENCE;
    while !lines.text().contains("Ack dropped") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        lines.text().contains("Ack dropped"),
        "a handler that returned Ok without settling its Ack is told:\n{}",
        lines.text()
    );
    app.shutdown().await;
}
