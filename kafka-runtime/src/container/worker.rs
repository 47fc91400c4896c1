//! The worker of one partition: runs the handler on each record, in offset order, and settles
//! failures through the listener's error policy.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::consumer::ConsumerShared;
use super::error_handler::DeadLetterPublisher;
use super::partition::{PartitionState, Resolution};
use super::retry_topics::{self, RetryTopics, Stage};
use super::ListenerSpec;
use crate::ack::Ack;
use crate::config::SpanLevel;
use crate::context::AppContext;
use crate::extract::RecordContext;
use crate::listener::{HandlerError, Invocation};
use crate::management::metrics::RecordMetrics;
use crate::propagation;
use crate::record::{ConsumerRecord, Coordinates};

/// The shortest wait before a failed dead-letter publication is tried again, so that a broker
/// that refuses it is not hammered when the back-off is zero.
const RECOVERY_RETRY_MIN: Duration = Duration::from_secs(1);

/// A record handed to a worker, with the rewind epoch it was fetched under.
pub(crate) struct Job {
    pub(crate) record: ConsumerRecord,
    pub(crate) epoch: u64,
}

/// The record that failed last (Spring's `FailedRecordTracker`).
struct Failure {
    offset: i64,
    /// Failed deliveries so far.
    attempts: u32,
    /// Set when the recoverer itself failed: the next delivery goes straight back to it.
    unrecovered: Option<HandlerError>,
}

pub(crate) async fn run(
    state: Arc<PartitionState>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<ConsumerShared>,
    app: Arc<AppContext>,
) {
    let spec = Arc::clone(&shared.spec);
    let manual = spec.ack_mode.is_manual();
    let metrics = RecordMetrics::new(spec.id, state.topic());
    let mut failure: Option<Failure> = None;
    while let Some(job) = jobs.recv().await {
        if shared.stopping.load(Ordering::Acquire) || state.is_revoked() {
            break;
        }
        if job.epoch != state.epoch() {
            continue;
        }
        let offset = job.record.offset;
        if spec.retry_topics.is_some() {
            if let Some(wait) = retry_topics::wait_until_due(&job.record) {
                // Not due yet: the partition pauses and the record comes back when it is.
                state.rewind(offset, wait);
                continue;
            }
        }
        let previous = failure.take().filter(|f| f.offset == offset);
        let attempt = previous.as_ref().map_or(1, |f| f.attempts + 1);
        if let Some(error) = previous.and_then(|f| f.unrecovered) {
            failure = recover(&spec, &state, &job.record, error, attempt - 1, &metrics).await;
            continue;
        }
        metrics.received.increment(1);
        if attempt > 1 {
            metrics.retried.increment(1);
        }

        // A span's level is fixed where it is written: one call site per level.
        macro_rules! record_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "record",
                    listener = spec.id,
                    topic = %state.topic(),
                    partition = state.partition(),
                    offset,
                    key = job.record.key.as_deref().map(Lossy).map(tracing::field::display),
                    attempt,
                    correlation_id = tracing::field::Empty,
                )
            };
        }
        let span = match spec.record_span {
            SpanLevel::Debug => record_span!(tracing::Level::DEBUG),
            SpanLevel::Trace => record_span!(tracing::Level::TRACE),
            _ => record_span!(tracing::Level::INFO),
        };
        let inherited = propagation::inherited(&job.record, &spec.correlation_header);
        if let Some((_, id)) = inherited
            .iter()
            .find(|(key, _)| *key == spec.correlation_header)
        {
            span.record("correlation_id", tracing::field::display(Lossy(id)));
        }
        let ack = manual.then(|| Ack::new(Arc::clone(&state), offset));
        let mut ctx = RecordContext::new(job.record, ack, Arc::clone(&app), spec.formats, attempt);
        // Extractors are user code too: a panic there is a failed delivery, not a dead worker.
        let invocation = std::panic::catch_unwind(AssertUnwindSafe(|| (spec.invoke)(&mut ctx)));
        let record = ctx.into_record();
        let result = match invocation {
            Err(panic) => Err(HandlerError::panic(panic.as_ref())),
            Ok(Invocation::Rejected(rejection)) => {
                metrics.failed.increment(1);
                // Retrying cannot make bad bytes good: straight to the recoverer.
                failure = recover(
                    &spec,
                    &state,
                    &record,
                    HandlerError::rejected(&rejection),
                    attempt,
                    &metrics,
                )
                .await;
                continue;
            }
            Ok(Invocation::Run(future)) => {
                let started = std::time::Instant::now();
                let outcome = propagation::scope(
                    inherited,
                    AssertUnwindSafe(future).catch_unwind().instrument(span),
                )
                .await;
                metrics
                    .handler_seconds
                    .record(started.elapsed().as_secs_f64());
                match outcome {
                    Ok(result) => result,
                    Err(panic) => Err(HandlerError::panic(panic.as_ref())),
                }
            }
        };
        if result.is_ok() {
            metrics.handled.increment(1);
        } else {
            metrics.failed.increment(1);
        }
        let resolution = state.handler_finished(offset, result.is_ok(), !manual);
        let Err(error) = result else {
            failure = (resolution == Resolution::Rewound).then_some(Failure {
                offset,
                attempts: attempt,
                unrecovered: None,
            });
            continue;
        };
        let coordinates = Coordinates(state.topic(), state.partition(), offset);
        match resolution {
            Resolution::Failed if spec.retry_topics.is_some() => {
                failure = recover(&spec, &state, &record, error, attempt, &metrics).await;
            }
            Resolution::Failed if error.is_retryable() && attempt < spec.errors.max_attempts => {
                let delay = spec.errors.delay(attempt);
                tracing::warn!(
                    listener = spec.id, record = %coordinates, attempt, ?delay, %error,
                    "handler failed; the record will be delivered again"
                );
                failure = Some(Failure {
                    offset,
                    attempts: attempt,
                    unrecovered: None,
                });
                state.rewind(offset, delay);
            }
            Resolution::Failed => {
                failure = recover(&spec, &state, &record, error, attempt, &metrics).await;
            }
            Resolution::Rewound => {
                failure = Some(Failure {
                    offset,
                    attempts: attempt,
                    unrecovered: None,
                })
            }
            Resolution::Settled => tracing::error!(
                listener = spec.id, record = %coordinates, %error,
                "handler failed after acknowledging the record; it stays acknowledged"
            ),
            Resolution::Gone => {}
        }
    }
}

/// Hands a record that will not be delivered to the handler again to the recoverer: logs it, or
/// publishes it to the dead-letter topic, then skips it. If publishing fails the record stays
/// uncommitted and comes back (returned as the failure to remember), never dropped.
async fn recover(
    spec: &ListenerSpec,
    state: &Arc<PartitionState>,
    record: &ConsumerRecord,
    error: HandlerError,
    attempts: u32,
    metrics: &RecordMetrics,
) -> Option<Failure> {
    let coordinates = Coordinates(state.topic(), state.partition(), record.offset);
    if let (Some(retry), Some(publisher)) = (&spec.retry_topics, &spec.dead_letter) {
        let forwarding = Forwarding {
            retry,
            publisher,
            metrics,
        };
        return forward(spec, &forwarding, state, record, error, attempts).await;
    }
    let target = spec
        .errors
        .recoverer
        .dead_letter_topic(&record.topic)
        .zip(spec.dead_letter.as_ref());
    let Some((topic, publisher)) = target else {
        tracing::error!(
            listener = spec.id, record = %coordinates, attempts, error_type = error.type_name(), %error,
            "giving up on the record; skipping it (error-handler.recoverer = log)"
        );
        state.ack(record.offset);
        return None;
    };
    match publisher.publish(&topic, record, &error).await {
        Ok(()) => {
            metrics.dead_lettered.increment(1);
            tracing::warn!(
                listener = spec.id, record = %coordinates, attempts, dead_letter_topic = %topic, %error,
                "giving up on the record; published it to the dead-letter topic"
            );
            state.ack(record.offset);
            None
        }
        Err(publish_error) => {
            let delay = spec.errors.delay(attempts).max(RECOVERY_RETRY_MIN);
            tracing::error!(
                listener = spec.id, record = %coordinates, dead_letter_topic = %topic, %publish_error, ?delay,
                "dead-letter publication failed; the record stays uncommitted and will be tried again"
            );
            state.rewind(record.offset, delay);
            Some(Failure {
                offset: record.offset,
                attempts,
                unrecovered: Some(error),
            })
        }
    }
}

/// Non-blocking retries: republishes a failed record to its next retry topic (due after the
/// delay), or after the last attempt (or at once when the error is not retryable) to
/// `<topic>-dlt`. The source partition keeps flowing; the record is committed here once the
/// republished copy is acknowledged.
/// Where `forward` republishes, and what it counts.
struct Forwarding<'a> {
    retry: &'a RetryTopics,
    publisher: &'a DeadLetterPublisher,
    metrics: &'a RecordMetrics,
}

async fn forward(
    spec: &ListenerSpec,
    forwarding: &Forwarding<'_>,
    state: &Arc<PartitionState>,
    record: &ConsumerRecord,
    error: HandlerError,
    attempts: u32,
) -> Option<Failure> {
    let Forwarding {
        retry,
        publisher,
        metrics,
    } = forwarding;
    let coordinates = Coordinates(state.topic(), state.partition(), record.offset);
    let stage = retry
        .stage(&record.topic, &spec.main_topics)
        .unwrap_or_else(|| Stage {
            main: record.topic.to_string(),
            index: 0,
        });
    let next = if error.is_retryable() {
        retry.next(&stage)
    } else {
        None
    };
    let (topic, result) = match next {
        Some((topic, delay)) => {
            let headers = retry_topics::retry_headers(record, stage.index + 1, delay);
            let result = publisher.republish(&topic, record, headers).await;
            if result.is_ok() {
                tracing::warn!(
                    listener = spec.id, record = %coordinates, retry_topic = %topic, ?delay, %error,
                    "handler failed; the record will be retried from the retry topic"
                );
            }
            (topic, result)
        }
        None => {
            let topic = RetryTopics::dead_letter_topic(&stage.main);
            let result = publisher.publish(&topic, record, &error).await;
            if result.is_ok() {
                metrics.dead_lettered.increment(1);
                tracing::warn!(
                    listener = spec.id, record = %coordinates, dead_letter_topic = %topic, %error,
                    "giving up on the record; published it to the dead-letter topic"
                );
            }
            (topic, result)
        }
    };
    match result {
        Ok(()) => {
            state.ack(record.offset);
            None
        }
        Err(publish_error) => {
            tracing::error!(
                listener = spec.id, record = %coordinates, %topic, %publish_error, delay = ?RECOVERY_RETRY_MIN,
                "republishing failed; the record stays uncommitted and will be tried again"
            );
            state.rewind(record.offset, RECOVERY_RETRY_MIN);
            Some(Failure {
                offset: record.offset,
                attempts,
                unrecovered: Some(error),
            })
        }
    }
}

/// Bytes shown as text (invalid UTF-8 replaced) only when a log line is written.
struct Lossy<'a>(&'a [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
