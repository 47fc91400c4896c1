//! The record a listener receives, owned and detached from the consumer.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Headers as _, Message};

/// One record from a topic partition: coordinates, key, value and headers.
///
/// Detached from librdkafka (a consumer must not be dropped while one of its borrowed messages
/// lives), so it can be moved into handlers and other tasks freely.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The record's timestamp in milliseconds since the epoch, if it has one.
    pub timestamp: Option<i64>,
    /// Whether the timestamp was set by the producer (`CreateTime`) or the broker (`LogAppendTime`).
    pub timestamp_type: TimestampType,
    /// The key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The value, `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The headers in wire order.
    pub headers: Vec<Header>,
}

/// Who set a record's timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimestampType {
    /// No timestamp.
    NotAvailable,
    /// The producer's clock (`CreateTime`).
    CreateTime,
    /// The broker's clock (`LogAppendTime`).
    LogAppendTime,
}

/// One record header; the value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value.
    pub value: Option<Vec<u8>>,
}

impl ConsumerRecord {
    /// Copies a borrowed message, reusing the partition's topic name.
    pub(crate) fn detach(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> Self {
        let (timestamp, timestamp_type) = match message.timestamp() {
            rdkafka::Timestamp::NotAvailable => (None, TimestampType::NotAvailable),
            rdkafka::Timestamp::CreateTime(ms) => (Some(ms), TimestampType::CreateTime),
            rdkafka::Timestamp::LogAppendTime(ms) => (Some(ms), TimestampType::LogAppendTime),
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ConsumerRecord {
            topic: Arc::clone(topic),
            partition: message.partition(),
            offset: message.offset(),
            timestamp,
            timestamp_type,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// `topic-partition@offset`, the way records are named in logs and errors.
    pub fn coordinates(&self) -> String {
        Coordinates(&self.topic, self.partition, self.offset).to_string()
    }
}

/// Formats `topic-partition@offset` without allocating until it is printed.
pub(crate) struct Coordinates<'a>(pub(crate) &'a str, pub(crate) i32, pub(crate) i64);

impl std::fmt::Display for Coordinates<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}@{}", self.0, self.1, self.2)
    }
}
