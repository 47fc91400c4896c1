//! Records a test produces, encoded explicitly (JSON, text, bytes), whatever the application's
//! serializers are.

use serde::Serialize;

use crate::template::{KafkaTemplate, SendResult};

/// A record being built for a topic; sent by [`json`](Produce::json), [`text`](Produce::text),
/// [`bytes`](Produce::bytes) or [`tombstone`](Produce::tombstone), which wait until the broker
/// has it and give its partition and offset.
#[derive(Debug)]
#[must_use = "a record is sent by json, text, bytes or tombstone"]
pub struct Produce<'k> {
    template: &'k KafkaTemplate,
    topic: String,
    key: Option<Vec<u8>>,
    partition: Option<i32>,
    headers: Vec<(String, Vec<u8>)>,
}

impl<'k> Produce<'k> {
    pub(super) fn new(template: &'k KafkaTemplate, topic: &str) -> Self {
        Produce {
            template,
            topic: topic.to_owned(),
            key: None,
            partition: None,
            headers: Vec::new(),
        }
    }

    /// The key, as bytes (`"user-123"` is its UTF-8 text, as Spring's `StringSerializer` writes
    /// it).
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// A header (added in order; a name may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The partition (by default the producer's partitioner picks it from the key).
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sends `value` as JSON.
    ///
    /// # Panics
    /// If `value` cannot be encoded, or the broker does not take the record.
    pub async fn json<V: Serialize + ?Sized>(self, value: &V) -> SendResult {
        let encoded = serde_json::to_vec(value).unwrap_or_else(|error| {
            panic!(
                "cannot encode the record for `{}` as JSON: {error}",
                self.topic
            )
        });
        self.send(Some(&encoded)).await
    }

    /// Sends `value` as UTF-8 text.
    ///
    /// # Panics
    /// If the broker does not take the record.
    pub async fn text(self, value: &str) -> SendResult {
        self.send(Some(value.as_bytes())).await
    }

    /// Sends `value` as it is: e.g. bytes that are not valid JSON, to see them dead-lettered.
    ///
    /// # Panics
    /// If the broker does not take the record.
    pub async fn bytes(self, value: impl AsRef<[u8]>) -> SendResult {
        self.send(Some(value.as_ref())).await
    }

    /// Sends a record with a null value (a tombstone).
    ///
    /// # Panics
    /// If the broker does not take the record.
    pub async fn tombstone(self) -> SendResult {
        self.send(None).await
    }

    async fn send(self, value: Option<&[u8]>) -> SendResult {
        self.template
            .send_raw(
                &self.topic,
                self.partition,
                self.key.as_deref(),
                value,
                self.headers,
            )
            .await
            .unwrap_or_else(|error| panic!("cannot produce to `{}`: {error}", self.topic))
    }
}
