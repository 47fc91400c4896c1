//! Records of a dead-letter topic, read back: Spring's `kafka_dlt-*` headers decoded.
//!
//! The names and encodings are spring-kafka's (`KafkaHeaders.DLT_*`, written by
//! `DeadLetterPublishingRecoverer`): the partition a 4-byte big-endian int, the offset and
//! timestamp 8-byte big-endian longs, the rest UTF-8 text. This crate writes them that way, so a
//! Java team's DLT tooling reads our dead letters, and [`DeadLetter`] reads theirs.

use crate::record::ConsumerRecord;

pub(crate) const ORIGINAL_TOPIC: &str = "kafka_dlt-original-topic";
pub(crate) const ORIGINAL_PARTITION: &str = "kafka_dlt-original-partition";
pub(crate) const ORIGINAL_OFFSET: &str = "kafka_dlt-original-offset";
pub(crate) const ORIGINAL_TIMESTAMP: &str = "kafka_dlt-original-timestamp";
pub(crate) const ORIGINAL_TIMESTAMP_TYPE: &str = "kafka_dlt-original-timestamp-type";
pub(crate) const ORIGINAL_CONSUMER_GROUP: &str = "kafka_dlt-original-consumer-group";
pub(crate) const EXCEPTION_FQCN: &str = "kafka_dlt-exception-fqcn";
pub(crate) const EXCEPTION_MESSAGE: &str = "kafka_dlt-exception-message";
pub(crate) const EXCEPTION_STACKTRACE: &str = "kafka_dlt-exception-stacktrace";

/// A record read from a dead-letter topic, with where it came from and why it failed.
///
/// Each field is `None` when its header is missing or not in Spring's encoding.
///
/// ```
/// use kafka_runtime::{ConsumerRecord, DeadLetter, Header, TimestampType};
///
/// let record = ConsumerRecord {
///     topic: "orders.DLT".into(),
///     partition: 0,
///     offset: 0,
///     timestamp: None,
///     timestamp_type: TimestampType::NotAvailable,
///     key: None,
///     value: Some(b"not json".to_vec()),
///     headers: vec![
///         Header { key: "kafka_dlt-original-topic".into(), value: Some(b"orders".to_vec()) },
///         Header { key: "kafka_dlt-original-offset".into(), value: Some(7i64.to_be_bytes().to_vec()) },
///     ],
/// };
/// let dead = DeadLetter::from(record);
/// assert_eq!(dead.original_topic.as_deref(), Some("orders"));
/// assert_eq!(dead.original_offset, Some(7));
/// assert_eq!(dead.exception_message, None);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead letter itself: the failed record's key, value and headers, on the dead-letter
    /// topic.
    pub record: ConsumerRecord,
    /// `kafka_dlt-original-topic`: the topic the record failed on.
    pub original_topic: Option<String>,
    /// `kafka_dlt-original-partition`.
    pub original_partition: Option<i32>,
    /// `kafka_dlt-original-offset`.
    pub original_offset: Option<i64>,
    /// `kafka_dlt-original-timestamp`, in milliseconds since the epoch.
    pub original_timestamp: Option<i64>,
    /// `kafka_dlt-original-timestamp-type`: `CreateTime`, `LogAppendTime` or `NoTimestampType`.
    pub original_timestamp_type: Option<String>,
    /// `kafka_dlt-original-consumer-group`: the group whose listener failed.
    pub original_group: Option<String>,
    /// `kafka_dlt-exception-fqcn`: the error's type (for a Rust handler, its Rust type name).
    pub exception_type: Option<String>,
    /// `kafka_dlt-exception-message`: the error's message.
    pub exception_message: Option<String>,
    /// `kafka_dlt-exception-stacktrace`: the error and its causes (Java: the stack trace).
    pub exception_stacktrace: Option<String>,
}

impl From<ConsumerRecord> for DeadLetter {
    fn from(record: ConsumerRecord) -> Self {
        let header = |name: &str| record.header(name).map(<[u8]>::to_vec);
        let text = |name: &str| header(name).and_then(|value| String::from_utf8(value).ok());
        let long = |name: &str| {
            header(name)
                .and_then(|value| <[u8; 8]>::try_from(value).ok())
                .map(i64::from_be_bytes)
        };
        DeadLetter {
            original_topic: text(ORIGINAL_TOPIC),
            original_partition: header(ORIGINAL_PARTITION)
                .and_then(|value| <[u8; 4]>::try_from(value).ok())
                .map(i32::from_be_bytes),
            original_offset: long(ORIGINAL_OFFSET),
            original_timestamp: long(ORIGINAL_TIMESTAMP).filter(|millis| *millis >= 0),
            original_timestamp_type: text(ORIGINAL_TIMESTAMP_TYPE),
            original_group: text(ORIGINAL_CONSUMER_GROUP),
            exception_type: text(EXCEPTION_FQCN),
            exception_message: text(EXCEPTION_MESSAGE),
            exception_stacktrace: text(EXCEPTION_STACKTRACE),
            record,
        }
    }
}
