//! Batch listeners (Spring's `listener.type: batch`): a handler that takes a [`Batch<T>`] receives
//! the records of one partition read together, up to `consumer.max-poll-records`, in offset order.
//!
//! A batch never mixes partitions: its records commit in order like a record listener's, and the
//! partitions of a consumer still run in parallel. Records whose payload cannot be decoded are
//! taken out before the handler runs and handed to the recoverer (logged, or dead-lettered with
//! the `kafka_dlt-*` headers); the handler gets the others.
//!
//! Acknowledgment: in manual ack modes a [`BatchAck`] argument; otherwise the batch is
//! acknowledged when the handler returns `Ok`. A handler says which record failed with
//! [`BatchError::at`](crate::BatchError::at).
//!
//! The extractors of a batch listener implement [`FromBatch`]: `Batch<T>`, `BatchAck`,
//! `State<T>`, `KafkaTemplate` and `DeliveryAttempt`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Format;
use crate::context::AppContext;
use crate::extract::{self, DeliveryAttempt, Headers, Metadata, Rejection, State};
use crate::handling::{AckEvent, AckKind};
use crate::record::{ConsumerRecord, RecordView};
use crate::template::KafkaTemplate;

/// The records of one batch, payloads decoded per `consumer.value-deserializer`, in offset order.
///
/// `Batch<Vec<u8>>` (or `Batch<String>`) gives the raw values.
#[derive(Debug)]
pub struct Batch<T>(pub Vec<BatchRecord<T>>);

/// One record of a [`Batch`].
#[derive(Debug)]
pub struct BatchRecord<T> {
    /// The decoded value.
    pub payload: T,
    /// The key's bytes; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The headers, in wire order.
    pub headers: Headers,
    /// Topic, partition, offset and timestamp.
    pub metadata: Metadata,
}

impl<T> BatchRecord<T> {
    /// The key as UTF-8 text; `None` if null or not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok())
    }
}

/// Everything a batch extractor may read: the batch's records (borrowed from the consumer's
/// buffer while the arguments are built), its ack token, the application's shared values.
pub struct BatchContext<'m> {
    records: Vec<RecordView<'m>>,
    /// Records taken out of the batch, by index, and why.
    rejected: Vec<(usize, Rejection)>,
    ack: Option<BatchAck>,
    app: &'m AppContext,
    value_format: Format,
    attempt: u32,
}

impl<'m> BatchContext<'m> {
    pub(crate) fn new(
        records: Vec<RecordView<'m>>,
        ack: Option<BatchAck>,
        app: &'m AppContext,
        value_format: Format,
        attempt: u32,
    ) -> Self {
        BatchContext {
            records,
            rejected: Vec::new(),
            ack,
            app,
            value_format,
            attempt,
        }
    }

    /// The number of records read (those rejected included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `index`, owned (copied out of the consumer's buffer).
    pub fn record(&self, index: usize) -> Option<ConsumerRecord> {
        self.records.get(index).map(|view| view.to_record())
    }

    /// Record `index`'s value bytes; `None` if there is no such record or its value is null.
    pub fn value(&self, index: usize) -> Option<&[u8]> {
        self.records.get(index).and_then(|view| view.value)
    }

    /// Takes record `index` out of the batch: the handler does not get it, and the recoverer
    /// does (it is logged or dead-lettered with `rejection` as the reason).
    pub fn reject(&mut self, index: usize, rejection: Rejection) {
        if index < self.records.len() && !self.is_rejected(index) {
            self.rejected.push((index, rejection));
        }
    }

    /// Whether record `index` was taken out of the batch.
    pub fn is_rejected(&self, index: usize) -> bool {
        self.rejected.iter().any(|(rejected, _)| *rejected == index)
    }

    /// Takes the batch's ack token; `None` if another argument took it or the ack mode isn't manual.
    pub fn take_ack(&mut self) -> Option<BatchAck> {
        self.ack.take()
    }

    /// The application's shared values.
    pub fn app(&self) -> &AppContext {
        self.app
    }

    /// 1 on the first delivery of the batch's first record, 2 on its first redelivery, ...
    pub fn delivery_attempt(&self) -> u32 {
        self.attempt
    }

    /// The records taken out, by index, once the arguments are built.
    pub(crate) fn into_rejected(self) -> Vec<(usize, Rejection)> {
        self.rejected
    }
}

/// A type that can be built from a batch, and so be an argument of a batch listener.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a batch `#[kafka_listener]`",
    label = "not a batch extractor",
    note = "a handler that takes a Batch<T> is a batch listener; its arguments must be Batch<T>, \
            BatchAck, State<T>, KafkaTemplate, DeliveryAttempt, or a type implementing FromBatch"
)]
pub trait FromBatch: Sized + Send + 'static {
    /// Whether this extractor takes the [`BatchAck`]; a manual-ack listener must have one such
    /// argument.
    const TAKES_ACK: bool = false;

    /// Builds the argument from the batch.
    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection>;

    /// Checks at startup that the application can provide this argument.
    fn check(app: &AppContext) -> Result<(), String> {
        let _ = app;
        Ok(())
    }
}

impl<T: DeserializeOwned + Send + 'static> FromBatch for Batch<T> {
    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection> {
        let mut records = Vec::with_capacity(ctx.records.len());
        for index in 0..ctx.records.len() {
            if ctx.is_rejected(index) {
                continue;
            }
            let view = ctx.records[index];
            let payload = view
                .value
                .ok_or_else(|| Rejection::new("Batch", "the record has a null value (a tombstone)"))
                .and_then(|bytes| extract::decode(bytes, ctx.value_format, "Batch"));
            match payload {
                Ok(payload) => records.push(BatchRecord {
                    payload,
                    key: view.key.map(<[u8]>::to_vec),
                    headers: Headers(view.owned_headers()),
                    metadata: Metadata {
                        topic: Arc::clone(view.topic),
                        partition: view.partition,
                        offset: view.offset,
                        timestamp: view.timestamp,
                    },
                }),
                Err(rejection) => ctx.rejected.push((index, rejection)),
            }
        }
        Ok(Batch(records))
    }
}

impl FromBatch for BatchAck {
    const TAKES_ACK: bool = true;

    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection> {
        ctx.take_ack().ok_or_else(|| {
            Rejection::new(
                "BatchAck",
                "no ack token: the listener's ack mode is not manual",
            )
        })
    }
}

impl<T: Clone + Send + Sync + 'static> FromBatch for State<T> {
    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection> {
        extract::state(ctx.app)
    }

    fn check(app: &AppContext) -> Result<(), String> {
        extract::check_state::<T>(app)
    }
}

impl FromBatch for KafkaTemplate {
    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.app.template().clone())
    }
}

impl FromBatch for DeliveryAttempt {
    fn from_batch(ctx: &mut BatchContext<'_>) -> Result<Self, Rejection> {
        Ok(DeliveryAttempt(ctx.attempt))
    }
}

/// Acknowledges a batch (Spring's `Acknowledgment` of a batch listener), in `manual` and
/// `manual_immediate` ack modes. Indexes are positions in the [`Batch`] the handler received.
///
/// - [`acknowledge`](BatchAck::acknowledge): every record of the batch is done.
/// - [`acknowledge_up_to`](BatchAck::acknowledge_up_to): records `0..=index` are done; the rest
///   stay unacknowledged (uncommitted) until the partition is read again from them.
/// - [`nack`](BatchAck::nack): records before `index` are done, the record at `index` and those
///   after it are delivered again after `delay`.
/// - Dropping it without any of these is a nack of the whole batch without delay.
#[must_use = "a BatchAck that is dropped without acknowledge() is a nack: the batch will be redelivered"]
pub struct BatchAck {
    events: UnboundedSender<AckEvent>,
    /// The offsets of the records the handler received, set once the arguments are built.
    offsets: Arc<OnceLock<Vec<i64>>>,
    epoch: u32,
    done: bool,
}

impl BatchAck {
    pub(crate) fn new(
        events: UnboundedSender<AckEvent>,
        offsets: Arc<OnceLock<Vec<i64>>>,
        epoch: u32,
    ) -> Self {
        BatchAck {
            events,
            offsets,
            epoch,
            done: false,
        }
    }

    /// Marks every record of the batch processed.
    pub fn acknowledge(mut self) {
        self.done = true;
        if let Some(last) = self.offsets().len().checked_sub(1) {
            self.ack_through(last);
        }
    }

    /// Marks records `0..=index` processed (all of them if `index` is past the end).
    pub fn acknowledge_up_to(mut self, index: usize) {
        self.done = true;
        let last = index.min(self.offsets().len().saturating_sub(1));
        if !self.offsets().is_empty() {
            self.ack_through(last);
        }
    }

    /// Marks the records before `index` processed and asks for the record at `index` and the
    /// partition's later records to be delivered again after `delay`.
    pub fn nack(mut self, index: usize, delay: Duration) {
        self.done = true;
        self.nack_from(index, delay);
    }

    fn offsets(&self) -> &[i64] {
        self.offsets.get().map_or(&[], Vec::as_slice)
    }

    fn ack_through(&self, index: usize) {
        let offsets = self.offsets();
        if let (Some(first), Some(last)) = (offsets.first(), offsets.get(index)) {
            self.send(*last, AckKind::AckFrom(*first));
        }
    }

    fn nack_from(&self, index: usize, delay: Duration) {
        if let Some(previous) = index.checked_sub(1) {
            self.ack_through(previous);
        }
        if let Some(offset) = self.offsets().get(index) {
            self.send(*offset, AckKind::Nack(delay));
        }
    }

    fn send(&self, offset: i64, kind: AckKind) {
        // The receiver is gone once the partition was revoked or the consumer stopped: the
        // records stay uncommitted.
        let _ = self.events.send(AckEvent {
            offset,
            epoch: self.epoch,
            kind,
        });
    }
}

impl fmt::Debug for BatchAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchAck")
            .field("offsets", &self.offsets())
            .finish()
    }
}

impl Drop for BatchAck {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(
                offsets = ?self.offsets(),
                "BatchAck dropped without acknowledge() or nack(): the batch will be redelivered"
            );
            self.nack_from(0, Duration::ZERO);
        }
    }
}
