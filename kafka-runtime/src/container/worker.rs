//! The worker of one partition: runs the handler on each record, in offset order.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::consumer::ConsumerShared;
use super::partition::{PartitionState, Resolution};
use crate::ack::Ack;
use crate::context::AppContext;
use crate::extract::RecordContext;
use crate::listener::{HandlerError, Invocation};
use crate::record::{ConsumerRecord, Coordinates};

/// A record handed to a worker, with the rewind epoch it was fetched under.
pub(crate) struct Job {
    pub(crate) record: ConsumerRecord,
    pub(crate) epoch: u64,
}

pub(crate) async fn run(
    state: Arc<PartitionState>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<ConsumerShared>,
    app: Arc<AppContext>,
) {
    let spec = Arc::clone(&shared.spec);
    let manual = spec.ack_mode.is_manual();
    // The offset that failed last and how many deliveries of it failed (Spring's FailedRecordTracker).
    let mut failures: Option<(i64, u32)> = None;
    while let Some(job) = jobs.recv().await {
        if shared.stopping.load(Ordering::Acquire) || state.is_revoked() {
            break;
        }
        if job.epoch != state.epoch() {
            continue;
        }
        let offset = job.record.offset;
        let attempt = match failures {
            Some((failed, count)) if failed == offset => count + 1,
            _ => 1,
        };
        let ack = manual.then(|| Ack::new(Arc::clone(&state), offset));
        let coordinates = Coordinates(state.topic(), state.partition(), offset);
        let mut ctx = RecordContext::new(job.record, ack, Arc::clone(&app), spec.formats, attempt);
        // Extractors are user code too: a panic there is a failed delivery, not a dead worker.
        let invocation = std::panic::catch_unwind(AssertUnwindSafe(|| (spec.invoke)(&mut ctx)));
        let result = match invocation {
            Err(panic) => {
                drop(ctx);
                Err(HandlerError::panic(panic.as_ref()))
            }
            Ok(Invocation::Rejected(rejection)) => {
                tracing::error!(
                    listener = spec.id, record = %coordinates, %rejection,
                    "record rejected before the handler; skipping it"
                );
                // Skip first, so that an ack token still inside `ctx` finds the record settled.
                state.ack(offset);
                drop(ctx);
                failures = None;
                continue;
            }
            Ok(Invocation::Run(future)) => {
                drop(ctx);
                match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => Err(HandlerError::panic(panic.as_ref())),
                }
            }
        };
        let resolution = state.handler_finished(offset, result.is_ok(), !manual);
        let Err(error) = result else {
            failures = (resolution == Resolution::Rewound).then_some((offset, attempt));
            continue;
        };
        match resolution {
            Resolution::Failed if error.is_retryable() && attempt < spec.max_attempts => {
                tracing::warn!(
                    listener = spec.id, record = %coordinates, attempt, %error,
                    "handler failed; the record will be delivered again"
                );
                failures = Some((offset, attempt));
                state.rewind(offset, spec.backoff);
            }
            Resolution::Failed => {
                tracing::error!(
                    listener = spec.id, record = %coordinates, attempt, error_type = error.type_name(), %error,
                    "handler failed for the last time; skipping the record"
                );
                failures = None;
                state.ack(offset);
            }
            Resolution::Rewound => failures = Some((offset, attempt)),
            Resolution::Settled => tracing::error!(
                listener = spec.id, record = %coordinates, %error,
                "handler failed after acknowledging the record; it stays acknowledged"
            ),
            Resolution::Gone => {}
        }
    }
}
