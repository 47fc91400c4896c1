//! Code around every handler call: a listener's record filter (Spring's
//! `RecordFilterStrategy`), and the application's interceptors (Spring's `RecordInterceptor`).

use std::time::Duration;

use crate::extract::RecordContext;
use crate::listener::HandlerError;

/// A listener's record filter (Spring's `RecordFilterStrategy`): `true` **discards** the record,
/// as Spring's `filter(record)` does. A discarded record is acknowledged (and so committed)
/// without calling the handler, and counted in `kafka_listener_records_filtered_total`.
///
/// ```
/// use kafka_runtime::prelude::*;
/// use kafka_runtime::extract::RecordContext;
///
/// /// Heartbeats carry a `type: heartbeat` header; nothing to do for them.
/// fn heartbeat(record: &RecordContext<'_>) -> bool {
///     record.header("type") == Some(b"heartbeat")
/// }
///
/// #[kafka_listener(topics = "user-events", filter = heartbeat)]
/// async fn handle(Payload(event): Payload<String>) {
///     println!("{event}");
/// }
/// ```
///
/// It runs before the handler's arguments are built, on the record as read (a payload that
/// would not decode is filtered like any other); a panic in it is a failed delivery.
///
/// On a batch listener (Spring's `FilteringBatchMessageListenerAdapter`) the discarded records
/// are left out of the batch the handler gets, and acknowledged; a batch whose records are all
/// discarded calls no handler. A panic there keeps the record in the batch (logged).
pub type RecordFilter = fn(&RecordContext<'_>) -> bool;

/// Code around every handler call of record listeners (Spring's `RecordInterceptor`), for what
/// cuts across handlers: timing, auditing. Registered with
/// [`KafkaApplication::with_interceptor`](crate::KafkaApplication::with_interceptor), in order;
/// `before` runs in that order, `after` in the reverse. Both run on the partition's task: keep
/// them short, and never block.
///
/// ```
/// use kafka_runtime::{HandlerError, Intercepted, RecordInterceptor};
/// use kafka_runtime::extract::RecordContext;
///
/// struct Audit;
///
/// impl RecordInterceptor for Audit {
///     fn before(&self, record: &RecordContext<'_>) {
///         tracing::info!(offset = record.offset(), "handling");
///     }
///     fn after(&self, record: &Intercepted<'_>, outcome: Result<(), &HandlerError>) {
///         tracing::info!(offset = record.offset, took = ?record.elapsed, ok = outcome.is_ok(), "handled");
///     }
/// }
/// ```
pub trait RecordInterceptor: Send + Sync + 'static {
    /// Before the handler runs, with the record as read (its arguments are built next).
    fn before(&self, record: &RecordContext<'_>) {
        let _ = record;
    }

    /// After the handler returned (or panicked, or an argument could not be built: then the
    /// error says so), before the container settles the record.
    fn after(&self, record: &Intercepted<'_>, outcome: Result<(), &HandlerError>) {
        let _ = (record, outcome);
    }
}

/// The record a handler call was about, as [`RecordInterceptor::after`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Intercepted<'a> {
    /// The listener's id.
    pub listener: &'static str,
    /// The record's topic.
    pub topic: &'a str,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The delivery attempt (1 for the first).
    pub attempt: u32,
    /// How long the call took.
    pub elapsed: Duration,
}
