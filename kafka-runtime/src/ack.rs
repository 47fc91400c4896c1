//! The acknowledgment token handed to manual-ack listeners.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::container::PartitionState;

/// Acknowledges one record (Spring's `Acknowledgment`), in `manual` and `manual_immediate` ack modes.
///
/// - [`acknowledge`](Ack::acknowledge) marks the record done. Its offset is committed once every
///   earlier record of the partition is acknowledged too: acknowledging offsets 5 and 7 but not 6
///   commits up to and including 5, then up to 7 when 6 is acknowledged.
/// - [`nack`](Ack::nack) asks for the record to be delivered again after a delay; the records after
///   it in the partition are delivered again too, in order.
/// - Dropping it without either is a nack without delay, logged at warn: an unacknowledged record
///   is never committed.
///
/// The token is `Send + 'static`: it can move to another task and be acknowledged later.
#[must_use = "an Ack that is dropped without acknowledge() is a nack: the record will be redelivered"]
pub struct Ack {
    partition: Arc<PartitionState>,
    offset: i64,
    done: bool,
}

impl Ack {
    pub(crate) fn new(partition: Arc<PartitionState>, offset: i64) -> Self {
        Ack {
            partition,
            offset,
            done: false,
        }
    }

    /// Marks the record processed; its offset will be committed (synchronously, here, in
    /// `manual_immediate` mode).
    pub fn acknowledge(mut self) {
        self.done = true;
        self.partition.ack(self.offset);
    }

    /// Asks for this record (and the partition's later records) to be delivered again after `delay`.
    /// The partition is paused meanwhile; other partitions keep flowing.
    pub fn nack(mut self, delay: Duration) {
        self.done = true;
        self.partition.nack(self.offset, delay);
    }

    /// The record's topic.
    pub fn topic(&self) -> &str {
        self.partition.topic()
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.partition.partition()
    }

    /// The record's offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset)
            .finish()
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(
                topic = self.topic(),
                partition = self.partition(),
                offset = self.offset,
                "Ack dropped without acknowledge() or nack(): the record will be redelivered"
            );
            self.partition.nack(self.offset, Duration::ZERO);
        }
    }
}
