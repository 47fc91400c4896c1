//! The record a handler is handling, as the code it runs sees it: its coordinates, which the log
//! lines of `run()`'s subscriber carry; the headers that records it sends through the template
//! inherit: the correlation id (`listener.correlation-header`, default `correlation_id`) and the
//! W3C trace context (`traceparent`, `tracestate`); and the handler's own acknowledgment of it.
//!
//! Both travel with the handler's future ([`Handled`]), current on the thread while it is
//! polled: nothing is formatted or allocated per record unless a line is written, and the
//! record's headers are read only when a line or a send asks for them. A task the handler
//! spawns is outside it, so what it logs or sends carries none of this; headers set explicitly
//! on a record always win.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::record::{HeldMessage, RecordView};
use crate::template::SendError;

thread_local! {
    /// The handling whose handler future this thread is polling (or dropping), if any: set by
    /// [`Handled`] for the length of the call only.
    static CURRENT: Cell<Option<NonNull<Handling>>> = const { Cell::new(None) };
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
    /// The headers that records sent while handling inherit, read from the record when first
    /// needed (most records are handled without a log line or a send asking for them).
    inherited: OnceCell<Inherited>,
    /// Where they are read from when `inherited` is first needed.
    source: Source,
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

/// The headers a handling passes on, and which of them is the correlation id.
#[derive(Default)]
struct Inherited {
    headers: Vec<(String, Vec<u8>)>,
    correlation: Option<usize>,
}

impl Inherited {
    fn of<'h>(
        headers: impl Iterator<Item = (Cow<'h, str>, Option<&'h [u8]>)>,
        correlation_header: &str,
    ) -> Self {
        let headers: Vec<(String, Vec<u8>)> = headers
            .filter(|(key, _)| key == correlation_header || TRACE_CONTEXT.contains(&key.as_ref()))
            .filter_map(|(key, value)| Some((key.into_owned(), value?.to_vec())))
            .collect();
        let correlation = headers
            .iter()
            .position(|(key, _)| key == correlation_header);
        Inherited {
            headers,
            correlation,
        }
    }
}

/// Where a handling reads the headers it passes on.
enum Source {
    /// Read already.
    Read,
    /// The librdkafka message being handled, which outlives the handling (see
    /// [`Handling::reading_later`]), and the name of the correlation header.
    Held(HeldMessage, &'static str),
}

/// `name` (the `listener.correlation-header` setting) as a `&'static str`, kept for the process
/// once per distinct name: every record's handling refers to it, and a reference count shared
/// by all partitions would be contended between the threads that run them.
pub(crate) fn correlation_header(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = crate::sync::lock(&NAMES);
    if let Some(known) = names.iter().find(|known| **known == name) {
        return known;
    }
    let kept: &'static str = Box::leak(name.into());
    names.push(kept);
    kept
}

impl Handling {
    /// The handling of `record`: the headers it passes on are copied now, so that it may
    /// outlive the record's message.
    pub(crate) fn new(
        listener: &'static str,
        record: &RecordView<'_>,
        delivered_by: (u32, DeliveredBy),
        correlation_header: &str,
    ) -> Self {
        let inherited = Inherited::of(record.headers(), correlation_header);
        Handling::of(
            listener,
            record,
            delivered_by,
            OnceCell::from(inherited),
            Source::Read,
        )
    }

    /// The handling of `record`, which reads the headers it passes on from the record's message
    /// only if something asks for them.
    ///
    /// # Safety
    /// The record's message (if it is borrowed from one) must outlive the handling.
    pub(crate) unsafe fn reading_later(
        listener: &'static str,
        record: &RecordView<'_>,
        delivered_by: (u32, DeliveredBy),
        correlation_header: &'static str,
    ) -> Self {
        match record.held_message() {
            Some(message) => Handling::of(
                listener,
                record,
                delivered_by,
                OnceCell::new(),
                Source::Held(message, correlation_header),
            ),
            None => Handling::new(listener, record, delivered_by, correlation_header),
        }
    }

    fn of(
        listener: &'static str,
        record: &RecordView<'_>,
        (attempt, delivered_by): (u32, DeliveredBy),
        inherited: OnceCell<Inherited>,
        source: Source,
    ) -> Self {
        Handling {
            listener,
            topic: Arc::clone(record.topic),
            partition: record.partition,
            offset: record.offset,
            attempt,
            inherited,
            source,
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
            inherited: OnceCell::from(Inherited::default()),
            source: Source::Read,
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

    /// The headers passed on, read now if they were not yet.
    fn inherited(&self) -> &Inherited {
        self.inherited.get_or_init(|| match &self.source {
            Source::Read => Inherited::default(),
            // SAFETY: `reading_later`'s caller guarantees that the message outlives `self`.
            Source::Held(message, correlation_header) => {
                Inherited::of(unsafe { message.headers() }, correlation_header)
            }
        })
    }

    /// The record's correlation id, when it has one.
    pub(crate) fn correlation_id(&self) -> Option<&[u8]> {
        let inherited = self.inherited();
        let (_, value) = inherited.headers.get(inherited.correlation?)?;
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

/// A handler's future run as the handling of its record: the handling is current while the
/// future is polled or dropped, inside the record's span, and a panic ends it like an error.
///
/// One wrapper rather than a task-local, a span and `catch_unwind` layered: a handler that
/// finishes at once, the common case, costs one poll of it.
pub(crate) struct Handled<F> {
    handling: Handling,
    span: tracing::Span,
    future: Option<F>,
}

impl<F: Future + Unpin> Handled<F> {
    pub(crate) fn new(handling: Handling, span: tracing::Span, future: F) -> Self {
        Handled {
            handling,
            span,
            future: Some(future),
        }
    }

    /// The handling, with what the handler settled and left on its way.
    pub(crate) fn handling(&self) -> &Handling {
        &self.handling
    }
}

impl<F: Future + Unpin> Future for Handled<F> {
    /// The handler's output, or its panic.
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Handled {
            handling,
            span,
            future,
        } = &mut *self;
        let Some(inner) = future.as_mut() else {
            // A bug of the container's, not the handler's: a silent `Pending` would stall the
            // partition, a panic fails its task's liveness and is logged.
            unreachable!("a handler's future polled after it ended");
        };
        let _entered = span.enter();
        let _current = Current::set(handling);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(panic) => Err(panic),
        };
        // Dropped here, with the handling current: what it drops may settle in place.
        let finished = future.take();
        drop_caught(finished);
        Poll::Ready(output)
    }
}

impl<F> Drop for Handled<F> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            // A handler stopped before it finished: dropped as its handling, like its polls.
            let _entered = self.span.enter();
            let _current = Current::set(&self.handling);
            drop_caught(Some(future));
        }
    }
}

/// Drops a handler's future; a panic in its drop is logged, not passed on (the delivery's
/// outcome is decided already).
fn drop_caught<F>(future: Option<F>) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(future))) {
        tracing::error!(
            error = %crate::listener::HandlerError::panic(panic.as_ref()),
            "a handler's future panicked while it was dropped"
        );
    }
}

/// Makes a handling current until dropped, then the one that was before it.
struct Current(Option<NonNull<Handling>>);

impl Current {
    fn set(handling: &Handling) -> Self {
        let previous = CURRENT
            .try_with(|current| current.replace(Some(NonNull::from(handling))))
            .ok()
            .flatten();
        Current(previous)
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.0));
    }
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
    let handling = CURRENT.try_with(Cell::get).ok().flatten()?;
    // SAFETY: `CURRENT` holds a handling only while a `Handled` that owns it is polled or
    // dropped on this thread (`Current` restores the previous value when that call ends), and
    // the handling is only read through shared references meanwhile.
    Some(f(unsafe { handling.as_ref() }))
}

/// Adds the inherited headers that `headers` does not set itself.
pub(crate) fn add_inherited(headers: &mut Vec<(String, Vec<u8>)>) {
    current(|handling| {
        for (key, value) in &handling.inherited().headers {
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
        let mut handled = Handled::new(
            handling,
            tracing::Span::none(),
            Box::pin(async {
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
            }),
        );
        assert!(runtime.block_on(&mut handled).is_ok());
        let settled = handled.handling().settled();
        assert_eq!(settled, Some(event(5, 2, nack)));
    }
}
