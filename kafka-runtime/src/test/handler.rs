//! One listener's handler run on a record built in the test, without a broker: what came of it
//! (acknowledged, nacked, failed, rejected) and what it sent through its template.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::app::KafkaApplication;
use crate::config::Config;
use crate::container::{deliver_once, ListenerSpec, Outcome as Delivered};
use crate::context::AppContext;
use crate::handling::AckKind;
use crate::listener::{HandlerError, Invoker};
use crate::record::{ConsumerRecord, Header, TimestampType};
use crate::template::SentRecord;

/// A listener's handler under test, with its configuration and state, and no broker: records
/// are handed to it one at a time and what it sends through its template is kept.
///
/// ```
/// use kafka_runtime::prelude::*;
/// use kafka_runtime::test::{Outcome, TestHandler, TestRecord};
///
/// #[derive(serde::Deserialize, serde::Serialize)]
/// struct Order { id: String, amount: i64 }
///
/// #[kafka_listener(id = "checkout", topics = "orders", group = "checkout", ack_mode = "manual", auto_startup = false)]
/// async fn checkout(Payload(order): Payload<Order>, template: KafkaTemplate, ack: Ack) -> Result<(), HandlerError> {
///     if order.amount <= 0 {
///         return Err(HandlerError::non_retryable("nothing to pay"));
///     }
///     template.send("payments", &order.id, &order.amount).await?;
///     ack.acknowledge();
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut handler = TestHandler::new("checkout");
/// let handled = handler.handle(TestRecord::json(&Order { id: "o-1".into(), amount: 30 })).await;
/// assert!(matches!(handled.outcome, Outcome::Acknowledged));
/// assert_eq!(handled.sent[0].topic, "payments");
/// assert_eq!(handled.sent[0].value.as_deref(), Some(&b"30"[..]));
///
/// let handled = handler.handle(TestRecord::json(&Order { id: "o-2".into(), amount: 0 })).await;
/// assert!(matches!(handled.outcome, Outcome::Failed(ref error) if error.message() == "nothing to pay"));
///
/// let handled = handler.handle(TestRecord::bytes("{not json")).await;
/// assert!(matches!(handled.outcome, Outcome::Rejected(_)));
/// # }
/// ```
pub struct TestHandler {
    listener: String,
    app: Option<KafkaApplication>,
    ready: Option<(Arc<ListenerSpec>, Arc<AppContext>)>,
}

impl TestHandler {
    /// The handler of the listener with this id (`#[kafka_listener(id = ...)]`, by default the
    /// function's name), configured by defaults until [`with_config`](TestHandler::with_config).
    pub fn new(listener: &str) -> Self {
        TestHandler {
            listener: listener.to_owned(),
            app: Some(KafkaApplication::new(Config::default())),
            ready: None,
        }
    }

    /// Configures the handler as the application would be (`application.toml`'s text): ack mode,
    /// deserializers, correlation header.
    ///
    /// # Panics
    /// If `toml` is not a valid configuration, or the first record was handled already.
    pub fn with_config(mut self, toml: &str) -> Self {
        let config = Config::from_toml_str(toml, "the test's configuration")
            .unwrap_or_else(|error| panic!("{error}"));
        self.app = Some(self.unbuilt().with_config(config));
        self
    }

    /// Registers a value that the handler receives through `State<T>`.
    ///
    /// # Panics
    /// If the first record was handled already.
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.app = Some(self.unbuilt().with_state(value));
        self
    }

    /// Sets a property for `${name}` placeholders in the listener's `topics` and `group`.
    ///
    /// # Panics
    /// If the first record was handled already.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.app = Some(self.unbuilt().with_property(name, value));
        self
    }

    /// Hands `record` to the handler once and gives what came of it. A record without a topic
    /// gets the listener's first.
    ///
    /// # Panics
    /// If the listener does not exist or cannot start as configured (the message says why), or
    /// is a batch listener.
    pub async fn handle(&mut self, record: TestRecord) -> Handled {
        let (spec, app) = self.ready();
        let Invoker::Record(invoke) = spec.invoke else {
            panic!(
                "listener `{}` is a batch listener: test it with TestKafka",
                spec.id
            );
        };
        let TestRecord {
            mut record,
            attempt,
        } = record;
        if record.topic.is_empty() {
            record.topic = Arc::from(spec.topics.first().map_or("", String::as_str));
        }
        let (delivered, acks) = deliver_once(&spec, invoke, &app, (&record, attempt)).await;
        let outcome = match delivered {
            Delivered::Failed(error) => Outcome::Failed(error),
            Delivered::Rejected(error) => Outcome::Rejected(error),
            Delivered::Filtered => Outcome::Filtered,
            Delivered::Duplicate => Outcome::Duplicate,
            Delivered::Handled if !spec.ack_mode.is_manual() => Outcome::Acknowledged,
            Delivered::Handled => match acks.first().map(|event| event.kind) {
                Some(AckKind::Nack(delay)) => Outcome::Nacked(delay),
                Some(AckKind::Dropped) => Outcome::Nacked(Duration::ZERO),
                Some(_) => Outcome::Acknowledged,
                None => Outcome::Unsettled,
            },
        };
        Handled {
            outcome,
            sent: app.template().take_recorded(),
        }
    }

    fn unbuilt(&mut self) -> KafkaApplication {
        self.app
            .take()
            .unwrap_or_else(|| panic!("configure the handler before its first record"))
    }

    fn ready(&mut self) -> (Arc<ListenerSpec>, Arc<AppContext>) {
        if let Some(ready) = &self.ready {
            return ready.clone();
        }
        let resolved = self
            .unbuilt()
            .handler_under_test(&self.listener)
            .unwrap_or_else(|error| panic!("{error}"));
        self.ready = Some(resolved.clone());
        resolved
    }
}

/// What came of one record handed to a [`TestHandler`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Handled {
    /// How the delivery ended.
    pub outcome: Outcome,
    /// What the handler sent through its template, in order, encoded as it would have gone to
    /// Kafka (with the headers inherited from the record: correlation id, trace context).
    pub sent: Vec<SentRecord>,
}

/// How a delivery ended, as the listener container would take it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Its offset would be committed: the handler acknowledged it (manual ack modes) or
    /// returned `Ok` (the others).
    Acknowledged,
    /// The handler nacked it (or dropped its `Ack` unacknowledged: a delay of zero): it would be
    /// delivered again after the delay.
    Nacked(Duration),
    /// The handler returned `Ok` and still holds its `Ack` elsewhere (manual ack modes): the
    /// record stays uncommitted until that `Ack` is used.
    Unsettled,
    /// The handler returned an error or panicked: retried per the error handler, then recovered
    /// (dead-lettered or logged).
    Failed(HandlerError),
    /// An argument could not be built from the record (undecodable payload or key, missing
    /// header): no retry, straight to the recoverer.
    Rejected(HandlerError),
    /// The listener's filter discarded it: acknowledged without calling the handler.
    Filtered,
    /// The listener deduplicates (`dedupe`) and the application's idempotency store says this
    /// record's id was processed: acknowledged without calling the handler.
    Duplicate,
}

/// A record built in the test, for [`TestHandler::handle`].
///
/// ```
/// use kafka_runtime::test::TestRecord;
///
/// let record = TestRecord::json(&serde_json::json!({"event_type": "user_created", "user_id": "user-123"}))
///     .key("user-123")
///     .header("correlation_id", "abc-123")
///     .attempt(2);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TestRecord {
    record: ConsumerRecord,
    attempt: u32,
}

impl TestRecord {
    /// A record whose value is `value` as JSON.
    ///
    /// # Panics
    /// If `value` cannot be encoded as JSON.
    pub fn json<V: Serialize + ?Sized>(value: &V) -> Self {
        let encoded = serde_json::to_vec(value)
            .unwrap_or_else(|error| panic!("cannot encode the test record as JSON: {error}"));
        Self::with_value(Some(encoded))
    }

    /// A record whose value is `value` as UTF-8 text.
    pub fn text(value: &str) -> Self {
        Self::with_value(Some(value.as_bytes().to_vec()))
    }

    /// A record whose value is these bytes (e.g. not valid JSON, to see it rejected).
    pub fn bytes(value: impl AsRef<[u8]>) -> Self {
        Self::with_value(Some(value.as_ref().to_vec()))
    }

    /// A record with a null value.
    pub fn tombstone() -> Self {
        Self::with_value(None)
    }

    fn with_value(value: Option<Vec<u8>>) -> Self {
        TestRecord {
            record: ConsumerRecord {
                topic: Arc::from(""),
                partition: 0,
                offset: 0,
                timestamp: None,
                timestamp_type: TimestampType::NotAvailable,
                key: None,
                value,
                headers: Vec::new(),
            },
            attempt: 1,
        }
    }

    /// The key, as bytes.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.record.key = Some(key.as_ref().to_vec());
        self
    }

    /// A header (added in order; a name may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.record.headers.push(Header {
            key: name.into(),
            value: Some(value.as_ref().to_vec()),
        });
        self
    }

    /// The topic (by default the listener's first).
    pub fn topic(mut self, topic: &str) -> Self {
        self.record.topic = Arc::from(topic);
        self
    }

    /// The partition (default 0).
    pub fn partition(mut self, partition: i32) -> Self {
        self.record.partition = partition;
        self
    }

    /// The offset (default 0).
    pub fn offset(mut self, offset: i64) -> Self {
        self.record.offset = offset;
        self
    }

    /// The producer's timestamp, in milliseconds since the epoch (default none).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.record.timestamp = Some(millis);
        self.record.timestamp_type = TimestampType::CreateTime;
        self
    }

    /// Which delivery this is (default 1): what `DeliveryAttempt` gives the handler.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }
}
