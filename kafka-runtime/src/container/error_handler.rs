//! What happens when a delivery fails: back-off between deliveries, and the recoverer after the
//! last one (Spring's `DefaultErrorHandler` + `DeadLetterPublishingRecoverer`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::retry_topics::{self, RetryTopics, Stage};
use super::ListenerSpec;
use crate::admin::TopicAdmin;
use crate::config::{BackOffKind, ErrorHandlerSettings, RecovererKind};
// Spring's header names and encodings, so that a Java team's DLT tooling reads our dead letters.
use crate::dead_letter::{
    EXCEPTION_FQCN, EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE, ORIGINAL_CONSUMER_GROUP,
    ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TIMESTAMP, ORIGINAL_TIMESTAMP_TYPE,
    ORIGINAL_TOPIC,
};
use crate::listener::HandlerError;
use crate::management::metrics::RecordMetrics;
use crate::record::{ConsumerRecord, Coordinates, TimestampType};
use crate::template::{KafkaTemplate, SendError};

/// Spring's `FixedBackOff` default of the `DefaultErrorHandler`: no wait, ten deliveries.
const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Spring's `ExponentialBackOff` defaults.
const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_MULTIPLIER: f64 = 1.5;
const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_DEAD_LETTER_TOPIC: &str = "{topic}.DLT";

/// A listener's resolved error handling.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPolicy {
    back_off: BackOff,
    pub(crate) max_attempts: u32,
    pub(crate) recoverer: Recoverer,
}

#[derive(Debug, Clone, PartialEq)]
enum BackOff {
    Fixed(Duration),
    Exponential {
        initial: Duration,
        multiplier: f64,
        max: Duration,
    },
}

/// What the last failed delivery leads to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recoverer {
    Log,
    /// The topic name template, `{topic}` standing for the record's topic.
    DeadLetter(String),
}

impl Recoverer {
    /// The dead-letter topic of records from `topic`, if records are dead-lettered.
    pub(crate) fn dead_letter_topic(&self, topic: &str) -> Option<String> {
        match self {
            Recoverer::Log => None,
            Recoverer::DeadLetter(template) => Some(template.replace("{topic}", topic)),
        }
    }
}

impl ErrorPolicy {
    pub(crate) fn new(settings: &ErrorHandlerSettings) -> Self {
        let back_off = match settings.back_off.unwrap_or(BackOffKind::Fixed) {
            BackOffKind::Fixed => BackOff::Fixed(settings.interval.unwrap_or(Duration::ZERO)),
            BackOffKind::Exponential => BackOff::Exponential {
                initial: settings
                    .initial_interval
                    .unwrap_or(DEFAULT_INITIAL_INTERVAL),
                multiplier: settings.multiplier.unwrap_or(DEFAULT_MULTIPLIER),
                max: settings.max_interval.unwrap_or(DEFAULT_MAX_INTERVAL),
            },
        };
        let recoverer = match settings.recoverer.unwrap_or(RecovererKind::Log) {
            RecovererKind::Log => Recoverer::Log,
            RecovererKind::DeadLetter => Recoverer::DeadLetter(
                settings
                    .dead_letter_topic
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DEAD_LETTER_TOPIC.to_owned()),
            ),
        };
        ErrorPolicy {
            back_off,
            max_attempts: settings.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            recoverer,
        }
    }

    /// The longest back-off: the exponential back-off's maximum, or Spring's default maximum.
    pub(crate) fn max_interval(&self) -> Duration {
        match self.back_off {
            BackOff::Fixed(interval) => interval.max(DEFAULT_MAX_INTERVAL),
            BackOff::Exponential { max, .. } => max,
        }
    }

    /// What happens to a failing record of `topics`, as `--check` shows it.
    pub(crate) fn describe(&self, topics: &[String]) -> String {
        let back_off = match self.back_off {
            BackOff::Fixed(interval) if interval.is_zero() => "no back-off".to_owned(),
            BackOff::Fixed(interval) => format!("fixed back-off {interval:?}"),
            BackOff::Exponential {
                initial,
                multiplier,
                max,
            } => format!("exponential back-off {initial:?} x{multiplier} up to {max:?}"),
        };
        let recovered = match &self.recoverer {
            Recoverer::Log => "log and skip".to_owned(),
            Recoverer::DeadLetter(_) => {
                let topics: Vec<String> = topics
                    .iter()
                    .filter_map(|topic| self.recoverer.dead_letter_topic(topic))
                    .collect();
                format!("dead-letter to {}", topics.join(", "))
            }
        };
        format!(
            "up to {} deliveries, {back_off}, then {recovered}",
            self.max_attempts
        )
    }

    /// The wait before the next delivery, after `failed` failed deliveries (1 after the first).
    pub(crate) fn delay(&self, failed: u32) -> Duration {
        match self.back_off {
            BackOff::Fixed(interval) => interval,
            BackOff::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let exponent = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
                let secs = initial.as_secs_f64() * multiplier.powi(exponent);
                Duration::try_from_secs_f64(secs).map_or(max, |delay| delay.min(max))
            }
        }
    }
}

/// Publishes records to dead-letter topics with Spring's headers.
pub(crate) struct DeadLetterPublisher {
    template: KafkaTemplate,
    group: String,
    /// Partition counts of dead-letter topics, looked up once.
    partitions: Mutex<HashMap<String, i32>>,
    /// Creates a dead-letter topic nobody created at startup (a pattern listener's).
    topics: Option<TopicAdmin>,
}

impl DeadLetterPublisher {
    pub(crate) fn new(template: KafkaTemplate, group: String, topics: Option<TopicAdmin>) -> Self {
        DeadLetterPublisher {
            template,
            group,
            partitions: Mutex::new(HashMap::new()),
            topics,
        }
    }

    /// Publishes `record` (its key, value and headers as they were) to `topic` with the DLT headers.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        record: &ConsumerRecord,
        error: &HandlerError,
    ) -> Result<(), SendError> {
        let headers = self.dead_letter_headers(record, error);
        self.republish(topic, record, headers).await
    }

    /// Publishes `record`'s key and value as they were, with `headers`, to `topic`: to the same
    /// partition number when `topic` has it (Spring's default destination), else by key.
    pub(crate) async fn republish(
        &self,
        topic: &str,
        record: &ConsumerRecord,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<(), SendError> {
        let partitions = match self.partition_count(topic).await {
            Some(count) => Some(count),
            None => self.create(topic, record).await,
        };
        let partition = partitions
            .filter(|count| record.partition < *count)
            .map(|_| record.partition);
        self.template
            .send_raw(
                topic,
                partition,
                record.key.as_deref(),
                record.value.as_deref(),
                headers,
            )
            .await
            .map(|_| ())
    }

    /// The record's own headers plus Spring's `kafka_dlt-*` headers.
    fn dead_letter_headers(
        &self,
        record: &ConsumerRecord,
        error: &HandlerError,
    ) -> Vec<(String, Vec<u8>)> {
        let mut headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone().unwrap_or_default()))
            .collect();
        let timestamp_type = match record.timestamp_type {
            TimestampType::NotAvailable => "NoTimestampType",
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        headers.extend([
            (ORIGINAL_TOPIC.to_owned(), record.topic.as_bytes().to_vec()),
            (
                ORIGINAL_PARTITION.to_owned(),
                record.partition.to_be_bytes().to_vec(),
            ),
            (
                ORIGINAL_OFFSET.to_owned(),
                record.offset.to_be_bytes().to_vec(),
            ),
            (
                ORIGINAL_TIMESTAMP.to_owned(),
                record.timestamp.unwrap_or(-1).to_be_bytes().to_vec(),
            ),
            (
                ORIGINAL_TIMESTAMP_TYPE.to_owned(),
                timestamp_type.as_bytes().to_vec(),
            ),
            (
                ORIGINAL_CONSUMER_GROUP.to_owned(),
                self.group.as_bytes().to_vec(),
            ),
            (
                EXCEPTION_FQCN.to_owned(),
                error.type_name().as_bytes().to_vec(),
            ),
            (
                EXCEPTION_MESSAGE.to_owned(),
                error.message().as_bytes().to_vec(),
            ),
            (
                EXCEPTION_STACKTRACE.to_owned(),
                error.chain().as_bytes().to_vec(),
            ),
        ]);
        headers
    }

    async fn partition_count(&self, topic: &str) -> Option<i32> {
        if let Some(known) = self.lock().get(topic) {
            return Some(*known);
        }
        // Only an answer is remembered: a lookup that failed once is made again next time.
        let count = self.template.partition_count(topic).await?;
        self.lock().insert(topic.to_owned(), count);
        Some(count)
    }

    /// Creates the missing `topic` (dead-letter or retry) with as many partitions as `record`'s
    /// topic, as at startup, so that a send to it does not wait for a topic that would never
    /// come (a broker that does not create topics on first use); then its partition count as
    /// the broker tells it (the topic may have existed after all, with fewer partitions).
    async fn create(&self, topic: &str, record: &ConsumerRecord) -> Option<i32> {
        let admin = self.topics.as_ref()?;
        let partitions = self
            .template
            .partition_count(&record.topic)
            .await
            .unwrap_or(1);
        if let Err(error) = admin.create(topic, partitions).await {
            tracing::warn!(%topic, %error, "cannot create the topic to republish to");
            return None;
        }
        tracing::info!(%topic, "created the missing topic to republish to, unless it existed");
        self.partition_count(topic).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i32>> {
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A recoverer that could not publish: the record stays uncommitted and is tried again.
#[derive(Debug)]
pub(crate) struct PublishFailed {
    pub(crate) topic: String,
    pub(crate) error: SendError,
}

/// Hands a record that will not be delivered to the handler again to the recoverer: logs it, or
/// publishes it to the dead-letter topic (or, with retry topics, to the next retry topic). `Ok`
/// when the record is settled and may be acknowledged.
pub(crate) async fn recover(
    spec: &ListenerSpec,
    record: &ConsumerRecord,
    error: &HandlerError,
    attempts: u32,
    metrics: &RecordMetrics,
) -> Result<(), PublishFailed> {
    let coordinates = Coordinates(&record.topic, record.partition, record.offset);
    if let (Some(retry), Some(publisher)) = (&spec.retry_topics, &spec.dead_letter) {
        return forward(spec, retry, publisher, record, error, metrics).await;
    }
    let target = spec
        .errors
        .recoverer
        .dead_letter_topic(&record.topic)
        .zip(spec.dead_letter.as_ref());
    let Some((topic, publisher)) = target else {
        tracing::error!(
            listener = spec.id, record = %coordinates, attempts, error_type = error.type_name(), %error,
            "giving up on the record; skipping it (error-handler.recoverer = log)"
        );
        return Ok(());
    };
    match publisher.publish(&topic, record, error).await {
        Ok(()) => {
            metrics.dead_lettered.increment(1);
            tracing::warn!(
                listener = spec.id, record = %coordinates, attempts, dead_letter_topic = %topic, %error,
                "giving up on the record; published it to the dead-letter topic"
            );
            Ok(())
        }
        Err(error) => Err(PublishFailed { topic, error }),
    }
}

/// Non-blocking retries: republishes a failed record to its next retry topic (due after the
/// delay), or after the last attempt (or at once when the error is not retryable) to
/// `<topic>-dlt`. The source partition keeps flowing.
async fn forward(
    spec: &ListenerSpec,
    retry: &RetryTopics,
    publisher: &DeadLetterPublisher,
    record: &ConsumerRecord,
    error: &HandlerError,
    metrics: &RecordMetrics,
) -> Result<(), PublishFailed> {
    let coordinates = Coordinates(&record.topic, record.partition, record.offset);
    let stage = retry
        .stage(&record.topic, &spec.main_topics)
        .unwrap_or_else(|| Stage {
            main: record.topic.to_string(),
            index: 0,
        });
    let next = error.is_retryable().then(|| retry.next(&stage)).flatten();
    let Some((topic, delay)) = next else {
        let topic = RetryTopics::dead_letter_topic(&stage.main);
        return match publisher.publish(&topic, record, error).await {
            Ok(()) => {
                metrics.dead_lettered.increment(1);
                tracing::warn!(
                    listener = spec.id, record = %coordinates, dead_letter_topic = %topic, %error,
                    "giving up on the record; published it to the dead-letter topic"
                );
                Ok(())
            }
            Err(error) => Err(PublishFailed { topic, error }),
        };
    };
    let headers = retry_topics::retry_headers(record, stage.index + 1, delay);
    match publisher.republish(&topic, record, headers).await {
        Ok(()) => {
            tracing::warn!(
                listener = spec.id, record = %coordinates, retry_topic = %topic, ?delay, %error,
                "handler failed; the record will be retried from the retry topic"
            );
            Ok(())
        }
        Err(error) => Err(PublishFailed { topic, error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_springs() {
        let policy = ErrorPolicy::new(&ErrorHandlerSettings::default());
        assert_eq!(policy.max_attempts, 10);
        assert_eq!(policy.delay(1), Duration::ZERO);
        assert_eq!(policy.recoverer, Recoverer::Log);
    }

    #[test]
    fn exponential_back_off_grows_to_its_maximum() {
        let settings = ErrorHandlerSettings {
            back_off: Some(BackOffKind::Exponential),
            initial_interval: Some(Duration::from_millis(100)),
            multiplier: Some(2.0),
            max_interval: Some(Duration::from_millis(500)),
            ..ErrorHandlerSettings::default()
        };
        let policy = ErrorPolicy::new(&settings);
        let delays: Vec<u128> = (1..=5).map(|n| policy.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn dead_letter_topic_defaults_to_springs_name() {
        let settings = ErrorHandlerSettings {
            recoverer: Some(RecovererKind::DeadLetter),
            ..ErrorHandlerSettings::default()
        };
        let policy = ErrorPolicy::new(&settings);
        assert_eq!(
            policy.recoverer.dead_letter_topic("orders").as_deref(),
            Some("orders.DLT")
        );
    }
}
