//! The record a handler is handling, as the code it runs sees it: its coordinates, which the log
//! lines of `run()`'s subscriber carry; the headers that records it sends through the template
//! inherit: the correlation id (`listener.correlation-header`, default `correlation_id`) and the
//! W3C trace context (`traceparent`, `tracestate`); and the handler's own acknowledgment of it.
//!
//! Both travel in a task-local around the handler's future: nothing is formatted or allocated
//! per record unless a line is written. A task the handler spawns is outside it, so what it
//! logs or sends carries none of this; headers set explicitly on a record always win.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::futures::TaskLocalFuture;

use crate::record::RecordView;
use crate::template::SendError;

tokio::task_local! {
    static HANDLING: Handling;
}

const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// What an acknowledgment tells the record's partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AckKind {
    Ack,
    /// Every record of the delivery from this offset up to the event's, inclusive (a batch).
    AckFrom(i64),
    Nack(Duration),
    /// The `Ack` was dropped unsettled: a nack without delay, reported by the partition only
    /// when it counts (the handler returned `Ok`; a failure decides otherwise).
    Dropped,
}

/// One acknowledgment, as the partition's task receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AckEvent {
    pub(crate) offset: i64,
    pub(crate) epoch: u32,
    pub(crate) kind: AckKind,
}

/// Which delivery is being handled: the partition task that handed the record out (a number
/// unique in the process), and the delivery's epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeliveredBy {
    pub(crate) task: u64,
    pub(crate) epoch: u32,
}

/// A handler's replies on their way: ready when each is delivered, or one failed.
pub(crate) type PendingReplies = BoxFuture<'static, Result<(), SendError>>;

/// What a handler's task knows of the record it handles.
pub(crate) struct Handling {
    listener: &'static str,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    attempt: u32,
    /// The headers that records sent while handling inherit.
    inherited: Vec<(String, Vec<u8>)>,
    /// Which of them is the correlation id.
    correlation: Option<usize>,
    delivered_by: DeliveredBy,
    /// The handler's acknowledgment, when it gave it in this task.
    settled: Cell<Option<AckKind>>,
    /// For a batch, how many records it has (from `offset` on).
    batch: Option<usize>,
    /// Whether the container acknowledges the record once its replies are delivered, while it
    /// reads on, rather than waiting for them in the handler.
    defers_replies: bool,
    /// The replies the handler left on their way.
    deferred: Cell<Option<PendingReplies>>,
}

impl Handling {
    pub(crate) fn new(
        listener: &'static str,
        record: &RecordView<'_>,
        (attempt, delivered_by): (u32, DeliveredBy),
        correlation_header: &str,
    ) -> Self {
        let inherited: Vec<(String, Vec<u8>)> = record
            .headers()
            .filter(|(key, _)| key == correlation_header || TRACE_CONTEXT.contains(&key.as_ref()))
            .filter_map(|(key, value)| Some((key.into_owned(), value?.to_vec())))
            .collect();
        let correlation = inherited
            .iter()
            .position(|(key, _)| key == correlation_header);
        Handling {
            listener,
            topic: Arc::clone(record.topic),
            partition: record.partition,
            offset: record.offset,
            attempt,
            inherited,
            correlation,
            delivered_by,
            settled: Cell::new(None),
            batch: None,
            defers_replies: false,
            deferred: Cell::new(None),
        }
    }

    /// The container waits for the handler's replies itself (see [`defer_replies`]).
    pub(crate) fn deferring_replies(mut self, defers: bool) -> Self {
        self.defers_replies = defers;
        self
    }

    /// The handling of a batch of `len` records from `first` on: its lines carry the first
    /// record's coordinates and `records`; what it sends inherits nothing (its records may
    /// carry different correlation ids).
    pub(crate) fn batch(
        listener: &'static str,
        first: &RecordView<'_>,
        len: usize,
        (attempt, delivered_by): (u32, DeliveredBy),
    ) -> Self {
        Handling {
            listener,
            topic: Arc::clone(first.topic),
            partition: first.partition,
            offset: first.offset,
            attempt,
            inherited: Vec::new(),
            correlation: None,
            delivered_by,
            settled: Cell::new(None),
            batch: Some(len),
            defers_replies: false,
            deferred: Cell::new(None),
        }
    }

    /// The acknowledgment the handler gave in this task, if it did.
    pub(crate) fn settled(&self) -> Option<AckEvent> {
        let kind = self.settled.get()?;
        Some(AckEvent {
            offset: self.offset,
            epoch: self.delivered_by.epoch,
            kind,
        })
    }

    /// The replies the handler left on their way, if it did.
    pub(crate) fn take_deferred(&self) -> Option<PendingReplies> {
        self.deferred.take()
    }

    /// The record's correlation id, when it has one.
    pub(crate) fn correlation_id(&self) -> Option<&[u8]> {
        let (_, value) = self.inherited.get(self.correlation?)?;
        Some(value)
    }

    /// The fields a log line written while handling carries, as `(name, value)`.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&'static str, Field<'_>)> {
        let always = [
            ("listener", Field::Text(self.listener)),
            ("topic", Field::Text(&self.topic)),
            ("partition", Field::Number(self.partition.into())),
            ("offset", Field::Number(self.offset)),
        ];
        let batch = self.batch.map(|len| {
            (
                "records",
                Field::Number(i64::try_from(len).unwrap_or(i64::MAX)),
            )
        });
        let redelivery =
            (self.attempt > 1).then_some(("attempt", Field::Number(self.attempt.into())));
        let correlation = self
            .correlation_id()
            .map(|id| ("correlation_id", Field::Bytes(id)));
        always
            .into_iter()
            .chain(batch)
            .chain(redelivery)
            .chain(correlation)
    }
}

/// One value of [`Handling::fields`].
pub(crate) enum Field<'a> {
    Text(&'a str),
    Number(i64),
    /// Shown as text, invalid UTF-8 replaced.
    Bytes(&'a [u8]),
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Text(text) => f.write_str(text),
            Field::Number(n) => write!(f, "{n}"),
            Field::Bytes(bytes) => f.write_str(&String::from_utf8_lossy(bytes)),
        }
    }
}

/// `future` run as the handling of `handling`; `take_value` on it gives `handling` back.
pub(crate) fn scope<F: Future>(handling: Handling, future: F) -> TaskLocalFuture<Handling, F> {
    HANDLING.scope(handling, future)
}

/// Settles `event` of partition task `task` in place when it is the delivery this task is
/// handling; `false` when it is another one (a token kept, or moved to another task).
pub(crate) fn settle(task: u64, event: AckEvent) -> bool {
    current(|handling| {
        let mine = handling.delivered_by.task == task
            && handling.delivered_by.epoch == event.epoch
            && handling.offset == event.offset
            && handling.settled.get().is_none();
        if mine {
            handling.settled.set(Some(event.kind));
        }
        mine
    })
    .unwrap_or(false)
}

/// Withdraws the acknowledgment the handler gave in the current task (its delivery failed after
/// it: a reply was not sent), so that the failure decides.
pub(crate) fn withdraw_settlement() {
    current(|handling| handling.settled.set(None));
}

/// Leaves `pending` replies to the container when the current handling lets it wait for them
/// (the record is acknowledged once they are delivered; a failed one fails the delivery); gives
/// them back otherwise, for the handler to wait for.
pub(crate) fn defer_replies(pending: PendingReplies) -> Option<PendingReplies> {
    let mut pending = Some(pending);
    current(|handling| {
        if handling.defers_replies {
            handling.deferred.set(pending.take());
        }
    });
    pending
}

/// Calls `f` with the record the current task is handling, if any.
pub(crate) fn current<R>(f: impl FnOnce(&Handling) -> R) -> Option<R> {
    HANDLING.try_with(f).ok()
}

/// Adds the inherited headers that `headers` does not set itself.
pub(crate) fn add_inherited(headers: &mut Vec<(String, Vec<u8>)>) {
    current(|handling| {
        for (key, value) in &handling.inherited {
            if !headers.iter().any(|(existing, _)| existing == key) {
                headers.push((key.clone(), value.clone()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ConsumerRecord, TimestampType};

    #[test]
    fn only_the_handled_delivery_settles_in_place_and_only_once() {
        let record = ConsumerRecord {
            topic: "orders".into(),
            partition: 0,
            offset: 5,
            timestamp: None,
            timestamp_type: TimestampType::NotAvailable,
            key: None,
            value: None,
            headers: Vec::new(),
        };
        let delivered_by = DeliveredBy { task: 7, epoch: 2 };
        let handling = Handling::new("l", &RecordView::of_record(&record), (1, delivered_by), "c");
        let event = |offset, epoch, kind| AckEvent {
            offset,
            epoch,
            kind,
        };
        let nack = AckKind::Nack(Duration::ZERO);
        assert!(!settle(7, event(5, 2, AckKind::Ack)), "outside a handling");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut scoped = std::pin::pin!(scope(handling, async {
            assert!(
                !settle(8, event(5, 2, AckKind::Ack)),
                "another task's token"
            );
            assert!(
                !settle(7, event(5, 1, AckKind::Ack)),
                "an earlier delivery's"
            );
            assert!(!settle(7, event(4, 2, AckKind::Ack)), "another record's");
            assert!(settle(7, event(5, 2, nack)), "its own");
            assert!(!settle(7, event(5, 2, AckKind::Ack)), "once");
        }));
        runtime.block_on(scoped.as_mut());
        let settled = scoped.take_value().and_then(|handling| handling.settled());
        assert_eq!(settled, Some(event(5, 2, nack)));
    }
}
