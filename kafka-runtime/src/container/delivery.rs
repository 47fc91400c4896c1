//! One delivery of a record to its handler: the arguments extracted, the handler run inside the
//! record's span and the correlation scope, panics caught, the outcome measured.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::ListenerSpec;
use crate::ack::Ack;
use crate::batch::{BatchAck, BatchContext};
use crate::config::SpanLevel;
use crate::context::AppContext;
use crate::dedupe::Screen;
use crate::extract::RecordContext;
use crate::handling::{AckEvent, DeliveredBy, Handled, Handling, PendingReplies};
use crate::intercept::Intercepted;
use crate::listener::{HandlerError, HandlerFuture, Invocation};
use crate::management::metrics::RecordMetrics;
use crate::record::RecordView;

/// The target of the span each record is handled in.
pub(crate) const RECORD_SPAN_TARGET: &str = module_path!();

/// How a delivery ended.
pub(crate) enum Outcome {
    /// The handler returned `Ok`.
    Handled,
    /// The handler returned an error or panicked.
    Failed(HandlerError),
    /// An argument could not be built from the record: retrying cannot make bad bytes good.
    Rejected(HandlerError),
    /// The listener's filter discarded the record: the handler was not called.
    Filtered,
    /// The idempotency store says the record was processed: the handler was not called.
    Duplicate,
}

/// One delivery's number (1 for the first), when it started, and by whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) number: u32,
    pub(crate) started: Instant,
    pub(crate) delivered_by: DeliveredBy,
}

/// What came of one delivery.
pub(crate) struct Delivered {
    pub(crate) outcome: Outcome,
    /// The handler's acknowledgment, when it gave it before returning, in its own task.
    pub(crate) settled: Option<AckEvent>,
    /// Replies the handler left on their way (see [`ListenerSpec::defers_replies`]).
    pub(crate) replies: Option<PendingReplies>,
    pub(crate) ended: Instant,
}

/// A handler call with its arguments built, ready to run.
pub(crate) struct Prepared {
    /// `None`: the listener's filter discarded the record.
    invocation: std::thread::Result<Option<Invocation>>,
    handling: Handling,
    span: tracing::Span,
    /// How many records the call handles.
    records: usize,
    /// The record's check against the idempotency store, when its listener deduplicates.
    screen: Option<Screen>,
}

/// A delivery begun by [`begin`]: ended in the handler's first poll (the common case: nothing
/// more to wait for, no future kept), or running.
pub(crate) enum Begun<'a> {
    Ended(Delivered),
    Running(BoxFuture<'a, Delivered>),
}

/// Runs `invoke` (the handler of `spec`) on `record` up to its first poll, with `cx` (the
/// partition task's): a handler that finishes at once is over when this returns; one that waits
/// goes on in the future it gives, woken through `cx` meanwhile.
pub(crate) fn begin<'a>(
    (spec, invoke): (&'a ListenerSpec, fn(&mut RecordContext<'_>) -> Invocation),
    app: &'a AppContext,
    record: (RecordView<'a>, Option<Ack>),
    (attempt, metrics): (Attempt, &'a RecordMetrics),
    cx: &mut Context<'_>,
) -> Begun<'a> {
    let view = record.0;
    let delivered_by = (attempt.number, attempt.delivered_by);
    // SAFETY: `view` borrows the record's message for 'a; the handling lives in this call or in
    // the future it gives, which 'a bounds; nothing takes it out of them (the handler's future
    // is 'static and sees it only through `handling::current`, whose closure cannot keep it).
    let handling =
        unsafe { Handling::reading_later(spec.id, &view, delivered_by, spec.correlation_header) };
    let Prepared {
        invocation,
        handling,
        span,
        screen,
        ..
    } = prepare_handling(spec, invoke, app, record, attempt, handling);
    let end = move |executed: Executed| {
        let ended = Instant::now();
        account(metrics, &executed.0, (1, attempt), ended);
        let coordinates = (view.topic.as_ref(), view.partition, view.offset);
        intercepted(app, spec.id, coordinates, (attempt, ended), &executed.0);
        let (outcome, settled, replies) = executed;
        Delivered {
            outcome,
            settled,
            replies,
            ended,
        }
    };
    let future = match future_of(invocation) {
        Ok(future) => future,
        Err(outcome) => return Begun::Ended(end((outcome, None, None))),
    };
    if screen.is_some() {
        let prepared = Prepared {
            invocation: Ok(Some(Invocation::Run(future))),
            handling,
            span,
            records: 1,
            screen,
        };
        return Begun::Running(Box::pin(async move { end(execute(prepared).await) }));
    }
    let mut handled = Handled::new(handling, span, future);
    match Pin::new(&mut handled).poll(cx) {
        Poll::Ready(result) => Begun::Ended(end(handler_ended(&handled, result))),
        Poll::Pending => Begun::Running(Box::pin(async move {
            let result = (&mut handled).await;
            end(handler_ended(&handled, result))
        })),
    }
}

/// Tells the application's interceptors how a call of `listener`'s handler on `record` (topic,
/// partition, offset) ended; nothing when the handler was not called (a filtered record).
pub(crate) fn intercepted(
    app: &AppContext,
    listener: &'static str,
    (topic, partition, offset): (&str, i32, i64),
    (attempt, ended): (Attempt, Instant),
    outcome: &Outcome,
) {
    let outcome = match outcome {
        Outcome::Filtered => return,
        // The interceptors' `before` ran: the store was asked after it.
        Outcome::Handled | Outcome::Duplicate => Ok(()),
        Outcome::Failed(error) | Outcome::Rejected(error) => Err(error),
    };
    let record = Intercepted {
        listener,
        topic,
        partition,
        offset,
        attempt: attempt.number,
        elapsed: ended.saturating_duration_since(attempt.started),
    };
    for interceptor in app.interceptors().iter().rev() {
        let after = AssertUnwindSafe(|| interceptor.after(&record, outcome));
        if std::panic::catch_unwind(after).is_err() {
            tracing::error!(
                listener,
                topic,
                partition,
                offset,
                "an interceptor panicked after the handler; the record is settled as if it had not"
            );
        }
    }
}

/// Builds the arguments of `invoke` (the handler of `spec`) from `record`: the call, ready to
/// run (it borrows nothing: the record may be read again, or go, meanwhile).
pub(crate) fn prepare(
    spec: &ListenerSpec,
    invoke: fn(&mut RecordContext<'_>) -> Invocation,
    app: &AppContext,
    (record, ack): (RecordView<'_>, Option<Ack>),
    attempt: Attempt,
) -> Prepared {
    let delivered_by = (attempt.number, attempt.delivered_by);
    let handling = Handling::new(spec.id, &record, delivered_by, spec.correlation_header);
    prepare_handling(spec, invoke, app, (record, ack), attempt, handling)
}

/// [`prepare`], in `handling`.
fn prepare_handling(
    spec: &ListenerSpec,
    invoke: fn(&mut RecordContext<'_>) -> Invocation,
    app: &AppContext,
    (record, ack): (RecordView<'_>, Option<Ack>),
    attempt: Attempt,
    handling: Handling,
) -> Prepared {
    let span = record_span(spec, &record, attempt.number);
    let handling = handling.deferring_replies(spec.defers_replies());
    if !span.is_disabled() {
        if let Some(id) = handling.correlation_id() {
            span.record("correlation_id", tracing::field::display(Lossy(id)));
        }
    }
    let invocation = {
        let mut ctx = RecordContext::new(record, ack, app, spec.formats, attempt.number)
            .replying_to(spec.send_to.as_ref());
        // Filters, interceptors and extractors are user code too: a panic there is a failed
        // delivery, not a dead task.
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            if spec.filter.is_some_and(|discard| discard(&ctx)) {
                return None;
            }
            for interceptor in app.interceptors() {
                interceptor.before(&ctx);
            }
            Some(invoke(&mut ctx))
        }))
    };
    let screen = Screen::of(spec.dedupe.as_ref(), app.idempotency(), spec.id, &record);
    Prepared {
        invocation,
        handling,
        span,
        records: 1,
        screen,
    }
}

/// Whether the filter of `spec` (a batch listener's) discards `record`: left out of the batch its
/// handler gets. A filter that panics keeps the record (logged): nothing is dropped on a panic.
pub(crate) fn batch_discards(
    spec: &ListenerSpec,
    discard: crate::intercept::RecordFilter,
    app: &AppContext,
    record: RecordView<'_>,
    attempt: u32,
) -> bool {
    let ctx = RecordContext::new(record, None, app, spec.formats, attempt);
    std::panic::catch_unwind(AssertUnwindSafe(|| discard(&ctx))).unwrap_or_else(|panic| {
        tracing::error!(
            listener = spec.id, record = %record.coordinates(),
            error = %HandlerError::panic(panic.as_ref()),
            "the record filter panicked; the record stays in the batch"
        );
        false
    })
}

/// Builds the arguments of `invoke` (the handler of a batch listener) from `records`, a
/// non-empty batch; gives the call and the records taken out of the batch (undecodable), by
/// index, and sets `received` to the offsets of the records the handler gets (for its
/// `BatchAck`).
pub(crate) fn prepare_batch(
    spec: &ListenerSpec,
    invoke: fn(&mut BatchContext<'_>) -> Invocation,
    app: &AppContext,
    (records, ack, received): (&[RecordView<'_>], Option<BatchAck>, &OnceLock<Vec<i64>>),
    attempt: Attempt,
) -> (Prepared, Vec<(usize, HandlerError)>) {
    let first = records[0];
    let span = record_span(spec, &first, attempt.number);
    let delivered_by = (attempt.number, attempt.delivered_by);
    let handling = Handling::batch(spec.id, &first, records.len(), delivered_by);
    let mut ctx = BatchContext::new(records.to_vec(), ack, app, spec.formats.1, attempt.number);
    // Extractors are user code too: a panic there is a failed delivery, not a dead task.
    let invocation = std::panic::catch_unwind(AssertUnwindSafe(|| Some(invoke(&mut ctx))));
    let rejected: Vec<(usize, HandlerError)> = ctx
        .into_rejected()
        .into_iter()
        .map(|(index, rejection)| (index, HandlerError::rejected(&rejection)))
        .collect();
    let kept = records
        .iter()
        .enumerate()
        .filter(|(index, _)| !rejected.iter().any(|(rejected, _)| rejected == index))
        .map(|(_, record)| record.offset)
        .collect();
    let _ = received.set(kept);
    let prepared = Prepared {
        invocation,
        handling,
        span,
        records: records.len() - rejected.len(),
        screen: None,
    };
    (prepared, rejected)
}

/// Awaits the handler's future of a prepared call under `catch_unwind`, inside its handling
/// and span; counts its records and measures the call.
pub(crate) async fn run(
    prepared: Prepared,
    attempt: Attempt,
    metrics: &RecordMetrics,
) -> Delivered {
    let records = prepared.records;
    let (outcome, settled, replies) = execute(prepared).await;
    let ended = Instant::now();
    account(metrics, &outcome, (records, attempt), ended);
    Delivered {
        outcome,
        settled,
        replies,
        ended,
    }
}

/// The handler's future of a prepared call, awaited under `catch_unwind` inside its handling
/// and span: its outcome, the acknowledgment it gave in its own task, and the replies it left
/// on their way.
pub(crate) async fn execute(
    Prepared {
        invocation,
        handling,
        span,
        screen,
        ..
    }: Prepared,
) -> Executed {
    let future = match future_of(invocation) {
        Ok(future) => future,
        Err(outcome) => return (outcome, None, None),
    };
    if let Some(screen) = &screen {
        match screen.seen().await {
            Ok(false) => {}
            Ok(true) => return (Outcome::Duplicate, None, None),
            Err(error) => return (Outcome::Failed(error), None, None),
        }
    }
    let mut handled = Handled::new(handling, span, future);
    let result = (&mut handled).await;
    let executed = handler_ended(&handled, result);
    if let (Outcome::Handled, Some(screen)) = (&executed.0, &screen) {
        screen.remember().await;
    }
    executed
}

/// What came of a handler call: its outcome, the acknowledgment it gave in its own task, and
/// the replies it left on their way.
pub(crate) type Executed = (Outcome, Option<AckEvent>, Option<PendingReplies>);

/// The handler's future of a call; or, when the handler does not run (a panic or a rejection
/// while its arguments were built, the filter discarding the record), the call's outcome.
fn future_of(
    invocation: std::thread::Result<Option<Invocation>>,
) -> Result<HandlerFuture, Outcome> {
    let outcome = match invocation {
        Ok(Some(Invocation::Run(future))) => return Ok(future),
        Err(panic) => Outcome::Failed(HandlerError::panic(panic.as_ref())),
        Ok(None) => Outcome::Filtered,
        Ok(Some(Invocation::Rejected(rejection))) => {
            Outcome::Rejected(HandlerError::rejected(&rejection))
        }
    };
    Err(outcome)
}

/// What a handler's ended call (`result`: its output or its panic) comes to.
fn handler_ended(
    handled: &Handled<HandlerFuture>,
    result: std::thread::Result<Result<(), HandlerError>>,
) -> Executed {
    let settled = handled.handling().settled();
    let replies = handled.handling().take_deferred();
    let outcome = match result {
        Ok(Ok(())) => Outcome::Handled,
        Ok(Err(error)) => Outcome::Failed(error),
        Err(panic) => Outcome::Failed(HandlerError::panic(panic.as_ref())),
    };
    (outcome, settled, replies)
}

/// Delivers `record` once to the handler of `spec`, outside any partition task (a handler test):
/// the outcome, and the acknowledgments its `Ack` gave during the call or before it was dropped.
#[cfg(feature = "test-util")]
pub(crate) async fn deliver_once(
    spec: &ListenerSpec,
    invoke: fn(&mut RecordContext<'_>) -> Invocation,
    app: &AppContext,
    (record, attempt): (&crate::record::ConsumerRecord, u32),
) -> (Outcome, Vec<AckEvent>) {
    // Partition tasks are numbered from 1: no token of theirs is taken for this one.
    const TASK: u64 = 0;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let ack = spec.ack_mode.is_manual().then(|| {
        let route = crate::ack::AckRoute {
            events: events.clone(),
            task: TASK,
            topic: std::sync::Arc::clone(&record.topic),
            partition: record.partition,
        };
        Ack::new(std::sync::Arc::new(route), (record.offset, 0))
    });
    let attempt = Attempt {
        number: attempt,
        started: Instant::now(),
        delivered_by: DeliveredBy {
            task: TASK,
            epoch: 0,
        },
    };
    let prepared = prepare(
        spec,
        invoke,
        app,
        (RecordView::of_record(record), ack),
        attempt,
    );
    let (mut outcome, settled, replies) = execute(prepared).await;
    if let (Outcome::Handled, Some(replies)) = (&outcome, replies) {
        if let Err(error) = replies.await {
            outcome = Outcome::Failed(crate::reply::not_sent(error));
        }
    }
    let coordinates = (record.topic.as_ref(), record.partition, record.offset);
    intercepted(
        app,
        spec.id,
        coordinates,
        (attempt, Instant::now()),
        &outcome,
    );
    drop(events);
    let mut acks: Vec<AckEvent> = settled.into_iter().collect();
    while let Ok(event) = received.try_recv() {
        acks.push(event);
    }
    (outcome, acks)
}

/// Counts a call of `records` records that ended at `ended` with `outcome`, and measures it.
pub(crate) fn account(
    metrics: &RecordMetrics,
    outcome: &Outcome,
    (records, attempt): (usize, Attempt),
    ended: Instant,
) {
    let records = u64::try_from(records).unwrap_or(u64::MAX);
    metrics.received.increment(records);
    match outcome {
        Outcome::Filtered => return metrics.filtered.increment(records),
        Outcome::Duplicate => return metrics.deduplicated.increment(records),
        _ => {}
    }
    if attempt.number > 1 {
        metrics.retried.increment(records);
    }
    metrics.handler_seconds.record(
        ended
            .saturating_duration_since(attempt.started)
            .as_secs_f64(),
    );
    if let Outcome::Handled = outcome {
        metrics.handled.increment(records);
    } else {
        metrics.failed.increment(records);
    }
}

/// The span a record is handled in, at the listener's `record-span` level.
fn record_span(spec: &ListenerSpec, record: &RecordView<'_>, attempt: u32) -> tracing::Span {
    // A span's level is fixed where it is written: one call site per level.
    macro_rules! record_span {
        ($level:expr) => {
            tracing::span!(
                target: RECORD_SPAN_TARGET,
                $level,
                "record",
                listener = spec.id,
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                key = record.key.map(Lossy).map(tracing::field::display),
                attempt,
                correlation_id = tracing::field::Empty,
            )
        };
    }
    match spec.record_span {
        SpanLevel::Debug => record_span!(tracing::Level::DEBUG),
        SpanLevel::Trace => record_span!(tracing::Level::TRACE),
        _ => record_span!(tracing::Level::INFO),
    }
}

/// Bytes shown as text (invalid UTF-8 replaced) only when a log line is written.
struct Lossy<'a>(&'a [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
