//! Around the handler: a listener's record filter (Spring's `RecordFilterStrategy`) and the
//! application's interceptors (Spring's `RecordInterceptor`).

mod common;

use std::sync::{Arc, Mutex};

use common::{http_get, metric, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::extract::RecordContext;
use kafka_runtime::prelude::*;
use kafka_runtime::{Intercepted, RecordInterceptor};

/// Heartbeats carry the header `type: heartbeat`.
fn heartbeat(record: &RecordContext<'_>) -> bool {
    record.header("type") == Some(&b"heartbeat"[..])
}

#[kafka_listener(
    id = "filtered",
    topics = "${topic}",
    group = "${group}",
    filter = heartbeat,
    auto_startup = false
)]
async fn filtered(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_record_is_committed_without_calling_the_handler_and_counted() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("filtered", 1), unique("filtered"));
    let seen = Recorder::<String>::default();
    let app = cluster
        .start_listener(
            "[management]\nport = 0\n",
            "filtered",
            (&topic, &group),
            seen.clone(),
        )
        .await;
    let kafka = cluster.kit();
    kafka.record(&topic).text("first").await;
    // Not even JSON: a filtered record is never decoded.
    kafka
        .record(&topic)
        .header("type", "heartbeat")
        .bytes([0xff, 0xfe])
        .await;
    kafka
        .record(&topic)
        .header("type", "event")
        .text("second")
        .await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, [Some(3)]);
    assert_eq!(seen.snapshot(), ["first", "second"]);
    let address = app.management_address().expect("management endpoint");
    let (_, exposition) = http_get(address, "/metrics").await;
    let labels = [("listener", "filtered"), ("topic", topic.as_str())];
    assert_eq!(
        metric(
            &exposition,
            "kafka_listener_records_filtered_total",
            &labels
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&exposition, "kafka_listener_records_handled_total", &labels),
        Some(2.0)
    );
    app.shutdown().await;
}

#[kafka_listener(
    id = "filtered-batches",
    topics = "${topic}",
    group = "${group}",
    filter = heartbeat,
    auto_startup = false
)]
async fn filtered_batches(
    Batch(records): Batch<String>,
    State(seen): State<Recorder<Vec<String>>>,
) {
    seen.push(records.into_iter().map(|record| record.payload).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_listener_s_filter_leaves_records_out_of_its_batches() {
    let cluster = Cluster::start();
    let (topic, group) = (
        cluster.topic("filtered-batches", 1),
        unique("filtered-batches"),
    );
    let kafka = cluster.kit();
    // Written before the listener starts: read as one batch.
    kafka.record(&topic).text("a").await;
    for _ in 0..2 {
        kafka
            .record(&topic)
            .header("type", "heartbeat")
            .bytes([0xff])
            .await;
    }
    kafka.record(&topic).text("b").await;
    let seen = Recorder::<Vec<String>>::default();
    let app = cluster
        .start_listener("", "filtered-batches", (&topic, &group), seen.clone())
        .await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, [Some(4)]);
    let batches = seen.snapshot();
    assert_eq!(batches.concat(), ["a", "b"], "{batches:?}");

    // A batch of heartbeats only: no call, committed all the same.
    kafka
        .record(&topic)
        .header("type", "heartbeat")
        .bytes([0xff])
        .await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, [Some(5)]);
    assert_eq!(seen.snapshot(), batches);
    app.shutdown().await;
}

#[tokio::test]
async fn a_handler_test_sees_a_filtered_record() {
    use kafka_runtime::test::{Outcome, TestHandler, TestRecord};
    let seen = Recorder::<String>::default();
    let mut handler = TestHandler::new("filtered")
        .with_property("topic", "events")
        .with_property("group", "g")
        .with_state(seen.clone());
    let handled = handler
        .handle(TestRecord::text("beat").header("type", "heartbeat"))
        .await;
    assert!(
        matches!(handled.outcome, Outcome::Filtered),
        "{:?}",
        handled.outcome
    );
    assert!(seen.snapshot().is_empty());
}

/// Fails on `"bad"`.
#[kafka_listener(
    id = "intercepted",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn intercepted(
    Payload(text): Payload<String>,
    State(log): State<Log>,
) -> Result<(), HandlerError> {
    log.push(format!("handle {text}"));
    if text == "bad" {
        return Err(HandlerError::non_retryable("bad input"));
    }
    Ok(())
}

/// What the handler and the interceptors did, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().expect("log").push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log").clone()
    }
}

struct Named(&'static str, Log);

impl RecordInterceptor for Named {
    fn before(&self, record: &RecordContext<'_>) {
        self.1
            .push(format!("{} before {}", self.0, record.offset()));
    }

    fn after(&self, record: &Intercepted<'_>, outcome: Result<(), &HandlerError>) {
        let outcome = match outcome {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.message().to_owned(),
        };
        self.1.push(format!(
            "{} after {} of {} attempt {}: {outcome}",
            self.0, record.offset, record.listener, record.attempt
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interceptors_run_around_every_handler_call_in_order() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("intercepted", 1), unique("intercepted"));
    let log = Log::default();
    let app = cluster
        .application("")
        .with_listeners(["intercepted"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(log.clone())
        .with_interceptor(Named("outer", log.clone()))
        .with_interceptor(Named("inner", log.clone()))
        .start()
        .await
        .expect("application starts");
    let kafka = cluster.kit();
    kafka.record(&topic).text("good").await;
    kafka.record(&topic).text("bad").await;
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(
        log.lines(),
        [
            "outer before 0",
            "inner before 0",
            "handle good",
            "inner after 0 of intercepted attempt 1: ok",
            "outer after 0 of intercepted attempt 1: ok",
            "outer before 1",
            "inner before 1",
            "handle bad",
            "inner after 1 of intercepted attempt 1: bad input",
            "outer after 1 of intercepted attempt 1: bad input",
        ]
    );
    app.shutdown().await;
}
