//! Headers that follow a record into the records its handler produces through the template: the
//! correlation id (`listener.correlation-header`, default `correlation_id`) and the W3C trace
//! context (`traceparent`, `tracestate`).
//!
//! They travel in a task-local set around the handler's future, so a record sent from a task the
//! handler spawns does not inherit them; headers set explicitly on a record always win.

use std::future::Future;

use crate::record::RecordView;

tokio::task_local! {
    static INHERITED: Vec<(String, Vec<u8>)>;
}

const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// The headers of `record` that records produced while it is handled inherit.
pub(crate) fn inherited(
    record: &RecordView<'_>,
    correlation_header: &str,
) -> Vec<(String, Vec<u8>)> {
    record
        .headers()
        .filter(|(key, _)| key == correlation_header || TRACE_CONTEXT.contains(&key.as_ref()))
        .filter_map(|(key, value)| Some((key.into_owned(), value?.to_vec())))
        .collect()
}

/// Runs `future` with `headers` inherited by what it sends (with none, outside any scope: what
/// it sends inherits nothing either way, and most records carry none of these headers).
pub(crate) async fn scope<F: Future>(headers: Vec<(String, Vec<u8>)>, future: F) -> F::Output {
    if headers.is_empty() {
        future.await
    } else {
        INHERITED.scope(headers, future).await
    }
}

/// Adds the inherited headers that `headers` does not set itself.
pub(crate) fn add_inherited(headers: &mut Vec<(String, Vec<u8>)>) {
    let _ = INHERITED.try_with(|inherited| {
        for (key, value) in inherited {
            if !headers.iter().any(|(existing, _)| existing == key) {
                headers.push((key.clone(), value.clone()));
            }
        }
    });
}
