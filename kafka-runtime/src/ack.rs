//! The acknowledgment token handed to manual-ack listeners.
//!
//! A token is a message to its partition's task: `acknowledge()` and `nack()` settle in place
//! when the record's own handler calls them (the handling task-local, read by the task when the
//! handler returns), and otherwise queue an event; neither locks nor waits for the broker, so
//! they are cheap from any thread or task. The event names the record's offset and the delivery
//! it came from, so a token kept from an earlier delivery of a record never settles a later one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::handling::{self, AckEvent, AckKind};

/// Where the tokens of one partition task send what their handler did not settle in place,
/// shared by them all (a token clones one reference, not a channel and a topic name).
pub(crate) struct AckRoute {
    pub(crate) events: UnboundedSender<AckEvent>,
    /// The partition task, unique in the process.
    pub(crate) task: u64,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
}

/// Acknowledges one record (Spring's `Acknowledgment`), in `manual` and `manual_immediate` ack modes.
///
/// - [`acknowledge`](Ack::acknowledge) marks the record done. Its offset is committed once every
///   earlier record of the partition is acknowledged too: acknowledging offsets 5 and 7 but not 6
///   commits up to and including 5, then up to 7 when 6 is acknowledged. In `manual_immediate`
///   mode the commit is sent at once, without waiting for the end of the batch.
/// - [`nack`](Ack::nack) asks for the record to be delivered again after a delay; the records after
///   it in the partition are delivered again too, in order.
/// - Dropping it without either is a nack without delay, logged at warn: an unacknowledged record
///   is never committed.
///
/// The token is `Send + 'static`: it can move to another task and be acknowledged later. It never
/// blocks. A token of a delivery that was superseded (its record was delivered again, or its
/// partition went to another consumer) is ignored.
#[must_use = "an Ack that is dropped without acknowledge() is a nack: the record will be redelivered"]
pub struct Ack {
    route: Arc<AckRoute>,
    offset: i64,
    epoch: u32,
    done: bool,
}

impl Ack {
    pub(crate) fn new(route: Arc<AckRoute>, (offset, epoch): (i64, u32)) -> Self {
        Ack {
            route,
            offset,
            epoch,
            done: false,
        }
    }

    /// Marks the record processed; its offset will be committed.
    pub fn acknowledge(mut self) {
        self.send(AckKind::Ack);
    }

    /// Asks for this record (and the partition's later records) to be delivered again after `delay`.
    /// The partition is paused meanwhile; other partitions keep flowing.
    pub fn nack(mut self, delay: Duration) {
        self.send(AckKind::Nack(delay));
    }

    /// The record's topic.
    pub fn topic(&self) -> &str {
        &self.route.topic
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.route.partition
    }

    /// The record's offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    fn send(&mut self, kind: AckKind) {
        self.done = true;
        let event = AckEvent {
            offset: self.offset,
            epoch: self.epoch,
            kind,
        };
        // Settled by its own handler, the common case, the token needs neither the channel nor
        // a wake-up: the partition task reads the settlement when the handler returns.
        if handling::settle(self.route.task, event) {
            return;
        }
        // The receiver is gone once the partition was revoked or the consumer stopped: the
        // record stays uncommitted, as the token's documentation says.
        let _ = self.route.events.send(event);
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("topic", &self.route.topic)
            .field("partition", &self.route.partition)
            .field("offset", &self.offset)
            .finish()
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done {
            // Logged by the partition when it counts: a handler that fails drops its Ack on the
            // way out, and then the failure is what its line says.
            self.send(AckKind::Dropped);
        }
    }
}
