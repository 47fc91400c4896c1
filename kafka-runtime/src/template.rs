//! `KafkaTemplate`: the producer side, built from `[kafka.producer]`.
//!
//! ```no_run
//! # async fn demo(template: kafka_runtime::KafkaTemplate) -> Result<(), kafka_runtime::SendError> {
//! #[derive(serde::Serialize)]
//! struct UserEvent { event_type: String, user_id: String }
//!
//! let event = UserEvent { event_type: "user_created".into(), user_id: "123".into() };
//! // Waits for the broker's acknowledgment and returns where the record landed.
//! let sent = template.send("user-events", "user-123", &event).await?;
//! println!("{}-{}@{}", sent.topic, sent.partition, sent.offset);
//!
//! // Headers, an explicit partition or timestamp:
//! template
//!     .record("user-events")
//!     .key("user-123")
//!     .header("correlation_id", "abc-123")
//!     .send(&event)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Keys and values are encoded per `producer.key-serializer` (default `string`) and
//! `producer.value-serializer` (default `json`); `&str`, `String`, `&[u8]` and `Vec<u8>` are sent
//! as they are. Delivery failures come back as [`SendError`], never as panics.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::config::{client, Format, KafkaSettings, Properties};
use crate::error::Error;
use crate::record::ConsumerRecord;
use crate::reply::{
    correlation_id, ReplyReader, RequestError, CORRELATION_ID_HEADER, REPLY_TOPIC_HEADER,
};
use crate::transaction::{TransactionError, TransactionalProducer};

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the broker gave the record.
    pub offset: i64,
}

/// Why a record was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The key or value could not be encoded; nothing was sent.
    #[error("cannot encode the {part} of a record for topic `{topic}`: {source}")]
    Encode {
        /// The topic.
        topic: String,
        /// `key` or `value`.
        part: &'static str,
        /// Why.
        source: CodecError,
    },
    /// The broker did not take the record (after librdkafka's retries, within `delivery.timeout.ms`).
    #[error("delivery to topic `{topic}` failed: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: KafkaError,
    },
}

/// Sends records; cheap to clone (clones share one librdkafka producer).
#[derive(Clone)]
pub struct KafkaTemplate {
    inner: Arc<TemplateInner>,
}

struct TemplateInner {
    sink: Sink,
    key_format: Format,
    value_format: Format,
    /// The reader of the reply topic, once started (`listen_for_replies`).
    replies: std::sync::OnceLock<ReplyReader>,
    /// `template.reply-timeout`.
    reply_timeout: Duration,
    /// The producer's properties, for transactional producers; `None` for a recording sink.
    properties: Option<Properties>,
    /// `producer.transaction-id-prefix`.
    transaction_prefix: Option<String>,
    /// The template's own transactions (`in_transaction`), one at a time.
    transactions: tokio::sync::Mutex<Option<Arc<TransactionalProducer>>>,
}

/// Where records go.
enum Sink {
    Kafka {
        producer: FutureProducer,
        /// Answers metadata questions without creating topics (a producer's metadata request
        /// lets an auto-creating broker create the topic it asks about).
        metadata: BaseConsumer,
    },
    /// A handler test's template: records are kept for the test, not sent.
    #[cfg(feature = "test-util")]
    Recording(std::sync::Mutex<Vec<SentRecord>>),
}

/// A record a handler sent through a recording template (`kafka_runtime::test`), as it would
/// have gone to Kafka: encoded, with the headers it inherited from the record being handled.
#[cfg(feature = "test-util")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentRecord {
    /// The topic.
    pub topic: String,
    /// The partition asked for, if any.
    pub partition: Option<i32>,
    /// The encoded key; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The encoded value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The headers in order, inherited ones (correlation id, trace context) last.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The timestamp asked for, if any.
    pub timestamp: Option<i64>,
}

impl std::fmt::Debug for KafkaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTemplate")
            .field("key_format", &self.inner.key_format)
            .field("value_format", &self.inner.value_format)
            .finish_non_exhaustive()
    }
}

impl KafkaTemplate {
    /// Creates a template for `bootstrap` with the `[kafka.producer]` settings.
    pub fn new(settings: &KafkaSettings, bootstrap: &str) -> Result<Self, Error> {
        let props = settings.producer_properties(bootstrap);
        let producer: FutureProducer = client::client_config(&props)
            .create()
            .map_err(Error::kafka("cannot create the template's producer"))?;
        let metadata: BaseConsumer = client::client_config(&settings.admin_properties(bootstrap))
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(Error::kafka("cannot create the template's metadata client"))?;
        Ok(KafkaTemplate {
            inner: Arc::new(TemplateInner {
                sink: Sink::Kafka { producer, metadata },
                key_format: settings.producer.key_serializer,
                value_format: settings.producer.value_serializer,
                replies: std::sync::OnceLock::new(),
                reply_timeout: settings.template.reply_timeout,
                properties: Some(props),
                transaction_prefix: settings.producer.transaction_id_prefix.clone(),
                transactions: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// A template that keeps what is sent through it instead of sending it (a handler test's).
    #[cfg(feature = "test-util")]
    pub(crate) fn recording(settings: &KafkaSettings) -> Self {
        KafkaTemplate {
            inner: Arc::new(TemplateInner {
                sink: Sink::Recording(std::sync::Mutex::new(Vec::new())),
                key_format: settings.producer.key_serializer,
                value_format: settings.producer.value_serializer,
                replies: std::sync::OnceLock::new(),
                reply_timeout: settings.template.reply_timeout,
                properties: None,
                transaction_prefix: settings.producer.transaction_id_prefix.clone(),
                transactions: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Takes the records a recording template kept (none for a template that sends).
    #[cfg(feature = "test-util")]
    pub(crate) fn take_recorded(&self) -> Vec<SentRecord> {
        match &self.inner.sink {
            Sink::Recording(sent) => sent
                .lock()
                .map(|mut sent| std::mem::take(&mut *sent))
                .unwrap_or_default(),
            Sink::Kafka { .. } => Vec::new(),
        }
    }

    /// Starts reading the reply topic `topic` (from its end), so that
    /// [`RecordBuilder::send_and_receive`] gets its replies there. A running application's
    /// template does this at startup with `kafka.template.reply-topic`; the topic must exist.
    /// Once started, later calls change nothing.
    pub async fn listen_for_replies(
        &self,
        settings: &KafkaSettings,
        bootstrap: &str,
        topic: &str,
    ) -> Result<(), Error> {
        if self.inner.replies.get().is_none() {
            let reader = ReplyReader::start(settings, bootstrap, topic).await?;
            let _ = self.inner.replies.set(reader);
        }
        Ok(())
    }

    /// `producer.transaction-id-prefix`, when transactions are on.
    pub(crate) fn transaction_prefix(&self) -> Option<&str> {
        self.inner.transaction_prefix.as_deref()
    }

    /// A producer with `transactional.id = id` and this template's producer settings,
    /// initialized; `None` for a recording template (a handler test's).
    pub(crate) async fn transactional_producer(
        &self,
        id: String,
    ) -> Option<Result<Arc<TransactionalProducer>, TransactionError>> {
        let properties = self.inner.properties.as_ref()?;
        Some(TransactionalProducer::start(properties, id).await)
    }

    /// Runs `work` in a transaction of the template's own (Spring's `executeInTransaction`):
    /// what it sends through this template (or any clone) becomes visible to `read_committed`
    /// readers only when it returns `Ok`; on `Err` the transaction is aborted. Transactions of
    /// the template run one at a time. Needs `producer.transaction-id-prefix`; the
    /// `transactional.id` is the prefix, `template.` and a random suffix (a new one per
    /// process: nothing to fence, no consumed offsets).
    ///
    /// ```no_run
    /// # async fn demo(template: kafka_runtime::KafkaTemplate) -> Result<(), kafka_runtime::InTransactionError<kafka_runtime::SendError>> {
    /// template
    ///     .in_transaction(|| async {
    ///         template.send("orders", "order-1", "created").await?;
    ///         template.send("audit", "order-1", "order-1 created").await?;
    ///         Ok(())
    ///     })
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`InTransactionError::Aborted`] with `work`'s error; [`InTransactionError::Transaction`]
    /// when the transaction could not be started or committed (then nothing is visible), or
    /// without a transaction id prefix.
    pub async fn in_transaction<T, E, F, Fut>(&self, work: F) -> Result<T, InTransactionError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut own = self.inner.transactions.lock().await;
        let producer = match &*own {
            Some(producer) => Arc::clone(producer),
            None => {
                let prefix = self
                    .transaction_prefix()
                    .ok_or(InTransactionError::NotTransactional)?;
                let suffix: String = crate::reply::correlation_id()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                let id = format!("{prefix}template.{suffix}");
                let producer = self
                    .transactional_producer(id)
                    .await
                    .ok_or(InTransactionError::NotTransactional)??;
                *own = Some(Arc::clone(&producer));
                producer
            }
        };
        producer.begin()?;
        match crate::transaction::scope(Arc::clone(&producer), work()).await {
            Ok(value) => match producer.commit(None).await {
                Ok(()) => Ok(value),
                Err(error) => {
                    self.after_failure(&mut own, &producer, &error).await;
                    Err(error.into())
                }
            },
            Err(error) => {
                if let Err(failed) = producer.abort().await {
                    self.after_failure(&mut own, &producer, &failed).await;
                }
                Err(InTransactionError::Aborted(error))
            }
        }
    }

    /// After a failed commit or abort: a producer that cannot go on is replaced next time; one
    /// that can is left with no open transaction.
    async fn after_failure(
        &self,
        own: &mut Option<Arc<TransactionalProducer>>,
        producer: &Arc<TransactionalProducer>,
        error: &TransactionError,
    ) {
        tracing::warn!(%error, "the template's transaction failed; nothing it sent is visible");
        if error.is_fatal() || producer.abort().await.is_err() {
            *own = None;
        }
    }

    /// `kafka.template.reply-timeout`: how long a request waits for its reply by default.
    pub fn reply_timeout(&self) -> Duration {
        self.inner.reply_timeout
    }

    /// Sends `value` with `key` to `topic` and waits for the broker's acknowledgment.
    pub async fn send<K, V>(&self, topic: &str, key: &K, value: &V) -> Result<SendResult, SendError>
    where
        K: Serialize + ?Sized + 'static,
        V: Serialize + ?Sized + 'static,
    {
        self.record(topic).key(key).send(value).await
    }

    /// Sends `value` with a null key.
    pub async fn send_value<V>(&self, topic: &str, value: &V) -> Result<SendResult, SendError>
    where
        V: Serialize + ?Sized + 'static,
    {
        self.record(topic).send(value).await
    }

    /// Starts a record with headers, a partition or a timestamp.
    pub fn record(&self, topic: &str) -> RecordBuilder<'_> {
        RecordBuilder {
            template: self,
            topic: topic.to_owned(),
            key: None,
            headers: Vec::new(),
            partition: None,
            timestamp: None,
        }
    }

    /// Sends every `(key, value)` to `topic` at once (pipelined, not one after the other) and waits
    /// for all; the results are in input order.
    pub async fn send_batch<K, V, I>(
        &self,
        topic: &str,
        items: I,
    ) -> Vec<Result<SendResult, SendError>>
    where
        K: Serialize + 'static,
        V: Serialize + 'static,
        I: IntoIterator<Item = (K, V)>,
    {
        let sends = items
            .into_iter()
            .map(|(key, value)| {
                let record = self.record(topic).key(&key);
                let encoded = record.encode(&value);
                async move { encoded?.deliver().await }
            })
            .collect::<Vec<_>>();
        join_all(sends).await
    }

    /// The (key, value) formats records are encoded in.
    pub(crate) fn formats(&self) -> (Format, Format) {
        (self.inner.key_format, self.inner.value_format)
    }

    /// Queues bytes as they are, a listener's reply: gives what tells when the broker took it,
    /// and whether the record is in the producer's queue already (else the future sends it,
    /// waiting for room while the queue is full: a reply sent later could overtake it). Inside
    /// a transaction it only joins it: the commit flushes it, and fails if it was not delivered.
    pub(crate) fn send_reply(
        &self,
        topic: Arc<str>,
        partition: Option<i32>,
        (key, value): (Option<Vec<u8>>, Option<Vec<u8>>),
        headers: Vec<(String, Vec<u8>)>,
    ) -> (BoxFuture<'static, Result<(), SendError>>, bool) {
        let mut reply = Encoded {
            template: Arc::clone(&self.inner),
            topic,
            key,
            value,
            headers,
            partition,
            timestamp: None,
        };
        if crate::transaction::current().is_some() {
            return (Box::pin(reply.queue_in_transaction()), false);
        }
        crate::handling::add_inherited(&mut reply.headers);
        reply.queue()
    }

    /// Sends bytes as they are (no encoding), e.g. a record copied to a dead-letter topic.
    pub(crate) async fn send_raw(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<SendResult, SendError> {
        Encoded {
            template: Arc::clone(&self.inner),
            topic: topic.into(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
            partition,
            timestamp: None,
        }
        .deliver()
        .await
    }

    /// The number of partitions of `topic`, `None` if it does not exist or the broker does not answer.
    pub(crate) async fn partition_count(&self, topic: &str) -> Option<i32> {
        let inner = Arc::clone(&self.inner);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = match &inner.sink {
                Sink::Kafka { metadata, .. } => metadata,
                #[cfg(feature = "test-util")]
                Sink::Recording(_) => return None,
            };
            let metadata = metadata
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .ok()?;
            let found = metadata.topics().iter().find(|t| t.name() == topic)?;
            if found.error().is_some() || found.partitions().is_empty() {
                return None;
            }
            i32::try_from(found.partitions().len()).ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits until every queued record is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        match &self.inner.sink {
            Sink::Kafka { producer, .. } => producer.flush(timeout),
            #[cfg(feature = "test-util")]
            Sink::Recording(_) => Ok(()),
        }
    }
}

/// Why [`KafkaTemplate::in_transaction`] committed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InTransactionError<E> {
    /// The work failed; the transaction was aborted.
    #[error("the transaction was aborted: {0}")]
    Aborted(E),
    /// The transaction could not begin or commit.
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    /// `producer.transaction-id-prefix` is not set.
    #[error("transactions need producer.transaction-id-prefix")]
    NotTransactional,
}

/// A record being built: see [`KafkaTemplate::record`].
#[must_use = "a record is sent only by .send()"]
pub struct RecordBuilder<'t> {
    template: &'t KafkaTemplate,
    topic: String,
    key: Option<Result<Vec<u8>, CodecError>>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

impl RecordBuilder<'_> {
    /// Sets the key, encoded per `producer.key-serializer`.
    pub fn key<K: Serialize + ?Sized + 'static>(mut self, key: &K) -> Self {
        self.key = Some(codec::encode(key, self.template.inner.key_format));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sends to this partition instead of the one the key hashes to.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the record's timestamp (milliseconds since the epoch).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = Some(millis);
        self
    }

    /// Sends the record as a request and waits up to `timeout` for its reply (Spring's
    /// `ReplyingKafkaTemplate.sendAndReceive`): the request carries the template's reply topic in
    /// `kafka_replyTopic` (unless it names one itself) and a fresh `kafka_correlationId`; the
    /// reply is the record on the reply topic that carries the same correlation id. Any number
    /// of requests may wait at once.
    ///
    /// ```no_run
    /// # async fn demo(template: kafka_runtime::KafkaTemplate) -> Result<(), kafka_runtime::reply::RequestError> {
    /// let reply = template
    ///     .record("prices.requests")
    ///     .key("order-7")
    ///     .send_and_receive(&serde_json::json!({ "id": 7 }), template.reply_timeout())
    ///     .await?;
    /// let price: serde_json::Value = serde_json::from_slice(reply.value.as_deref().unwrap_or_default())
    ///     .expect("a JSON reply");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`RequestError::NoReplyTopic`] without `kafka.template.reply-topic`,
    /// [`RequestError::NotSent`] if the request was not sent, [`RequestError::Timeout`], and
    /// [`RequestError::Remote`] when the reply carries `kafka_exception-message`.
    pub async fn send_and_receive<V: Serialize + ?Sized + 'static>(
        mut self,
        value: &V,
        timeout: Duration,
    ) -> Result<ConsumerRecord, RequestError> {
        let reader = self
            .template
            .inner
            .replies
            .get()
            .ok_or(RequestError::NoReplyTopic)?;
        if !self
            .headers
            .iter()
            .any(|(name, _)| name == REPLY_TOPIC_HEADER)
        {
            self.headers.push((
                REPLY_TOPIC_HEADER.to_owned(),
                reader.topic().as_bytes().to_vec(),
            ));
        }
        let correlation = correlation_id();
        self.headers
            .push((CORRELATION_ID_HEADER.to_owned(), correlation.clone()));
        let topic = self.topic.clone();
        let expected = reader.expect(correlation);
        self.send(value).await?;
        expected.receive(&topic, timeout).await
    }

    /// Encodes `value`, sends the record and waits for the broker's acknowledgment.
    pub async fn send<V: Serialize + ?Sized + 'static>(
        self,
        value: &V,
    ) -> Result<SendResult, SendError> {
        self.encode(value)?.deliver().await
    }

    fn encode<V: Serialize + ?Sized + 'static>(self, value: &V) -> Result<Encoded, SendError> {
        let encode_error = |part, source| SendError::Encode {
            topic: self.topic.clone(),
            part,
            source,
        };
        let key = self.key.transpose().map_err(|e| encode_error("key", e))?;
        let value = codec::encode(value, self.template.inner.value_format)
            .map_err(|e| encode_error("value", e))?;
        Ok(Encoded {
            template: Arc::clone(&self.template.inner),
            topic: self.topic.into(),
            key,
            value: Some(value),
            headers: self.headers,
            partition: self.partition,
            timestamp: self.timestamp,
        })
    }
}

/// A record with its bytes ready, not borrowing from the caller.
struct Encoded {
    template: Arc<TemplateInner>,
    /// Shared: a listener's replies all go to its one `send_to` topic.
    topic: Arc<str>,
    key: Option<Vec<u8>>,
    /// `None` is a null value (a tombstone).
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

impl Encoded {
    /// Inside a transaction, queues the record and returns: the commit flushes it, and fails
    /// (so the transaction is aborted) if it was not delivered. Elsewhere, or when the queue is
    /// full, delivers it.
    async fn queue_in_transaction(mut self) -> Result<(), SendError> {
        if let (Sink::Kafka { .. }, Some(transaction)) =
            (&self.template.sink, crate::transaction::current())
        {
            crate::handling::add_inherited(&mut self.headers);
            if transaction.producer().send_result(self.record()).is_ok() {
                return Ok(());
            }
        }
        self.deliver().await.map(|_| ())
    }

    /// Queues the record on the template's own producer; what it gives resolves when the
    /// record is delivered, and tells whether it was queued now. With the queue full it delivers
    /// the record instead (waiting for room).
    fn queue(self) -> (BoxFuture<'static, Result<(), SendError>>, bool) {
        let producer = match &self.template.sink {
            Sink::Kafka { producer, .. } => producer,
            #[cfg(feature = "test-util")]
            Sink::Recording(_) => return (self.delivered_when_polled(), false),
        };
        let started = std::time::Instant::now();
        match producer
            .send_result(self.record())
            .map_err(|(error, _)| error)
        {
            Ok(delivery) => {
                let delivered = async move {
                    let delivered = match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((source, _))) => Err(source),
                        Err(_) => Err(KafkaError::Canceled),
                    };
                    measured(&self.topic, started, delivered)
                };
                (Box::pin(delivered), true)
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                (self.delivered_when_polled(), false)
            }
            Err(source) => {
                let refused = measured(&self.topic, started, Err(source));
                (Box::pin(std::future::ready(refused)), true)
            }
        }
    }

    async fn deliver(mut self) -> Result<SendResult, SendError> {
        crate::handling::add_inherited(&mut self.headers);
        // Inside a transaction (a transactional listener's handling, `in_transaction`), the
        // send joins it.
        let transaction = crate::transaction::current();
        let producer = match (&self.template.sink, &transaction) {
            (Sink::Kafka { .. }, Some(transaction)) => transaction.producer(),
            (Sink::Kafka { producer, .. }, None) => producer,
            #[cfg(feature = "test-util")]
            (Sink::Recording(sent), _) => {
                return Ok(record_in(
                    sent,
                    SentRecord {
                        topic: self.topic.to_string(),
                        partition: self.partition,
                        key: self.key,
                        value: self.value,
                        headers: self.headers,
                        timestamp: self.timestamp,
                    },
                ))
            }
        };
        let started = std::time::Instant::now();
        let delivered = producer.send(self.record(), Timeout::Never).await;
        let delivered = delivered
            .map(|delivery| SendResult {
                topic: self.topic.to_string(),
                partition: delivery.partition,
                offset: delivery.offset,
            })
            .map_err(|(source, _)| source);
        measured(&self.topic, started, delivered)
    }

    /// Delivers the record when the future it gives is polled (waiting for room in the queue).
    fn delivered_when_polled(self) -> BoxFuture<'static, Result<(), SendError>> {
        Box::pin(async move { self.deliver().await.map(|_| ()) })
    }

    fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic);
        if let Some(value) = &self.value {
            record = record.payload(&value[..]);
        }
        if let Some(key) = &self.key {
            record = record.key(&key[..]);
        }
        if !self.headers.is_empty() {
            let headers =
                self.headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (name, value)| {
                        headers.insert(KafkaHeader {
                            key: name,
                            value: Some(value),
                        })
                    });
            record = record.headers(headers);
        }
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        if let Some(timestamp) = self.timestamp {
            record = record.timestamp(timestamp);
        }
        record
    }
}

/// How a send to `topic` begun at `started` ended, measured; a failure as the template's error.
fn measured<T>(
    topic: &str,
    started: std::time::Instant,
    result: Result<T, KafkaError>,
) -> Result<T, SendError> {
    crate::management::metrics::send(topic, started.elapsed(), result.is_ok());
    result.map_err(|source| SendError::Delivery {
        topic: topic.to_owned(),
        source,
    })
}

/// Keeps `record` in a recording template; its offset is its place among those kept.
#[cfg(feature = "test-util")]
fn record_in(sent: &std::sync::Mutex<Vec<SentRecord>>, record: SentRecord) -> SendResult {
    let mut sent = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = SendResult {
        topic: record.topic.clone(),
        partition: record.partition.unwrap_or(0),
        offset: i64::try_from(sent.len()).unwrap_or(i64::MAX),
    };
    sent.push(record);
    result
}
