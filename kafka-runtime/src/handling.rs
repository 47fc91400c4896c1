//! The record a handler is handling, as the code it runs sees it: its coordinates, which the log
//! lines of `run()`'s subscriber carry, and the headers that records it sends through the
//! template inherit: the correlation id (`listener.correlation-header`, default
//! `correlation_id`) and the W3C trace context (`traceparent`, `tracestate`).
//!
//! Both travel in a task-local around the handler's future: nothing is formatted or allocated
//! per record unless a line is written. A task the handler spawns is outside it, so what it
//! logs or sends carries none of this; headers set explicitly on a record always win.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::record::RecordView;

tokio::task_local! {
    static HANDLING: Handling;
}

const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

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
}

impl Handling {
    pub(crate) fn new(
        listener: &'static str,
        record: &RecordView<'_>,
        attempt: u32,
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
        }
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
        let redelivery =
            (self.attempt > 1).then_some(("attempt", Field::Number(self.attempt.into())));
        let correlation = self
            .correlation_id()
            .map(|id| ("correlation_id", Field::Bytes(id)));
        always.into_iter().chain(redelivery).chain(correlation)
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

/// Runs `future` as the handling of `handling`.
pub(crate) async fn scope<F: Future>(handling: Handling, future: F) -> F::Output {
    HANDLING.scope(handling, future).await
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
