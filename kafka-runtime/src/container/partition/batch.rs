//! A partition task's batches, for batch listeners: the records that are ready, handed to the
//! handler as one call, and settled the way Spring's `DefaultErrorHandler` settles a batch.
//!
//! - Records whose payload cannot be decoded are handed to the recoverer before the handler
//!   runs (so no acknowledgment of the batch can cover one that is not recovered); when the
//!   recoverer fails, the handler is not called and the whole batch is read again after the
//!   back-off.
//! - `Ok`: every record the handler got is acknowledged (manual modes: its `BatchAck` decides).
//! - `BatchError::at(index)`: the records before `index` are acknowledged; the record at `index`
//!   fails like a record listener's (retried in place with the back-off, then recovered); the
//!   records after it are read again after it.
//! - Any other error: the whole batch is delivered again with the back-off, then each of its
//!   records is recovered.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::MessageStream;
use rdkafka::consumer::ConsumerContext;
use rdkafka::message::BorrowedMessage;

use super::{Failure, PartitionTask};
use crate::batch::{BatchAck, BatchContext};
use crate::container::delivery::{self, Attempt, Delivered, Outcome};
use crate::container::error_handler;
use crate::container::tracker::Delivery;
use crate::listener::{HandlerError, Invocation};
use crate::record::RecordView;

impl<C: ConsumerContext + 'static> PartitionTask<C> {
    /// Handles `first` and the records that are ready after it, up to `max-poll-records` (and
    /// the room `max-in-flight` leaves), as one batch.
    pub(super) async fn handle_batch<'q>(
        &mut self,
        invoke: fn(&mut BatchContext<'_>) -> Invocation,
        first: Option<(BorrowedMessage<'q>, Delivery)>,
        stream: &mut MessageStream<'q, C>,
    ) {
        let spec = Arc::clone(&self.setup.spec);
        let mut messages: Vec<(BorrowedMessage<'q>, Delivery)> = first.into_iter().collect();
        let limit = usize::try_from(spec.max_poll_records).unwrap_or(usize::MAX);
        while !messages.is_empty()
            && messages.len() < limit
            && self.tracker.in_flight() < spec.max_in_flight
        {
            match stream.next().now_or_never() {
                Some(Some(message)) => messages.extend(self.accept(message)),
                _ => break,
            }
        }
        let Some(&(_, head)) = messages.first() else {
            return;
        };
        let topic = Arc::clone(&self.setup.topic);
        let records: Vec<RecordView<'_>> = messages
            .iter()
            .map(|(message, _)| RecordView::of_message(message, &topic))
            .collect();
        let deliveries: Vec<Delivery> = messages.iter().map(|(_, delivery)| *delivery).collect();
        let started = Instant::now();
        self.setup.progress.handling(head.offset, started);
        let previous = self.failure.take().filter(|f| f.offset == head.offset);
        let ended = match previous {
            Some(Failure {
                unrecovered: Some(error),
                attempts,
                recovery_failures,
                ..
            }) => {
                // The first record's recovery failed before: it goes straight back to the
                // recoverer, and the rest is read again after it.
                self.recover(
                    &records[0].to_record(),
                    head,
                    error,
                    attempts,
                    recovery_failures,
                )
                .await;
                if self.failure.is_none() && records.len() > 1 {
                    self.rewind(head.offset + 1, Duration::ZERO);
                }
                Instant::now()
            }
            previous => {
                let attempt = self.attempt(previous.map_or(1, |f| f.attempts + 1), started, head);
                // A nack of the batch from its first record counts on from this attempt.
                self.current = Some((head, attempt.number));
                self.deliver_batch(invoke, (&records, &deliveries), attempt)
                    .await
            }
        };
        let busy = self.tracker.in_flight() > 0;
        self.setup.progress.progressed(busy, ended);
        self.offer(true);
    }

    /// One delivery of a batch and its settlement; returns when it ended.
    async fn deliver_batch(
        &mut self,
        invoke: fn(&mut BatchContext<'_>) -> Invocation,
        (records, deliveries): (&[RecordView<'_>], &[Delivery]),
        attempt: Attempt,
    ) -> Instant {
        let spec = Arc::clone(&self.setup.spec);
        let passed;
        let (records, deliveries) = match spec.filter {
            None => (records, deliveries),
            Some(discard) => {
                passed = self.filter_batch(discard, (records, deliveries), attempt.number);
                if passed.0.is_empty() {
                    return Instant::now();
                }
                (&passed.0[..], &passed.1[..])
            }
        };
        let received = Arc::new(OnceLock::new());
        let ack = spec.ack_mode.is_manual().then(|| {
            BatchAck::new(
                self.ack_route.events.clone(),
                Arc::clone(&received),
                deliveries[0].epoch,
            )
        });
        let app = Arc::clone(&self.setup.app);
        let (prepared, rejected) =
            delivery::prepare_batch(&spec, invoke, &app, (records, ack, &received), attempt);
        let head = deliveries[0].offset;
        for (index, error) in rejected.iter() {
            let rejected = (records[*index], deliveries[*index]);
            if !self.recover_rejected(rejected, head, error).await {
                return Instant::now();
            }
        }
        let kept: Vec<(RecordView<'_>, Delivery)> = records
            .iter()
            .zip(deliveries)
            .enumerate()
            .filter(|(index, _)| !rejected.iter().any(|(rejected, _)| rejected == index))
            .map(|(_, (record, delivery))| (*record, *delivery))
            .collect();
        if kept.is_empty() {
            // Every record was undecodable, and is recovered: nothing for the handler.
            return Instant::now();
        }
        let delivered = delivery::run(prepared, attempt, &self.metrics).await;
        let ended = delivered.ended;
        let handled = matches!(delivered.outcome, Outcome::Handled);
        self.settle_batch(delivered, &kept, attempt.number).await;
        if handled {
            ended
        } else {
            Instant::now()
        }
    }

    /// The records of a batch the listener's filter keeps; those it discards are acknowledged
    /// here and counted, and the handler never sees them (Spring's
    /// `FilteringBatchMessageListenerAdapter`).
    fn filter_batch<'r>(
        &mut self,
        discard: crate::intercept::RecordFilter,
        (records, deliveries): (&[RecordView<'r>], &[Delivery]),
        attempt: u32,
    ) -> (Vec<RecordView<'r>>, Vec<Delivery>) {
        let spec = Arc::clone(&self.setup.spec);
        let app = Arc::clone(&self.setup.app);
        let mut passed = (
            Vec::with_capacity(records.len()),
            Vec::with_capacity(records.len()),
        );
        let mut filtered = 0u64;
        for (record, delivery) in records.iter().zip(deliveries) {
            if delivery::batch_discards(&spec, discard, &app, *record, attempt) {
                filtered += 1;
                self.acknowledge(*delivery);
            } else {
                passed.0.push(*record);
                passed.1.push(*delivery);
            }
        }
        self.metrics.received.increment(filtered);
        self.metrics.filtered.increment(filtered);
        passed
    }

    /// Hands an undecodable record of the batch from `head` on to the recoverer; `false` when
    /// that failed, the batch then being held (read again after the back-off, from its first
    /// record not yet recovered, its handler not called).
    async fn recover_rejected(
        &mut self,
        (record, delivery): (RecordView<'_>, Delivery),
        head: i64,
        error: &HandlerError,
    ) -> bool {
        let spec = Arc::clone(&self.setup.spec);
        let owned = record.to_record();
        match error_handler::recover(&spec, &owned, error, 1, &self.metrics).await {
            Ok(()) => {
                self.setup.progress.recovery_failing(false);
                self.batch_recovery_failures = 0;
                self.acknowledge(delivery);
                true
            }
            Err(failed) => {
                // The handler is not called: the whole batch is read again after the wait.
                self.batch_recovery_failures = self.batch_recovery_failures.saturating_add(1);
                let failures = self.batch_recovery_failures;
                let delay = self.publication_failed(record.coordinates(), &failed, failures);
                let from = self
                    .tracker
                    .first_pending_from(head)
                    .unwrap_or(delivery.offset);
                self.rewind(from, delay);
                false
            }
        }
    }

    /// What the outcome of a batch's handler leads to; `kept` are the records it received.
    async fn settle_batch(
        &mut self,
        Delivered {
            outcome, settled, ..
        }: Delivered,
        kept: &[(RecordView<'_>, Delivery)],
        attempt: u32,
    ) {
        let spec = Arc::clone(&self.setup.spec);
        let Some(&(_, head)) = kept.first() else {
            return;
        };
        if let Some(event) = settled {
            self.on_ack(event, None);
        }
        let error = match outcome {
            Outcome::Handled | Outcome::Filtered | Outcome::Duplicate => {
                self.drain_acks(None);
                if !spec.ack_mode.is_manual() {
                    // One pass: the undecodable records among them are acknowledged already.
                    let last = kept.last().map_or(head.offset, |(_, last)| last.offset);
                    let count = self.tracker.ack_range(head.offset, last, head.epoch);
                    if count > 0 {
                        self.acknowledged(count);
                    }
                }
                return;
            }
            Outcome::Rejected(error) => return self.recover_each(kept, error, attempt).await,
            Outcome::Failed(error) => error,
        };
        // A failed handler usually drops its BatchAck on the way out: the failure decides.
        self.drain_acks(Some(head));
        match error.batch_index().filter(|index| *index < kept.len()) {
            Some(index) => {
                for (_, delivery) in &kept[..index] {
                    self.acknowledge(*delivery);
                }
                let (record, failing) = kept[index];
                // Only the batch's first record can be one that failed before.
                let attempt = if index == 0 { attempt } else { 1 };
                let failed = Delivered {
                    outcome: Outcome::Failed(error),
                    settled: None,
                    replies: None,
                    ended: Instant::now(),
                };
                // The records after it were read with it: a retry seeks back to it.
                self.settle(&spec, failed, (record, false), failing, attempt)
                    .await;
                let recovered = self.failure.is_none() && !self.tracker.is_pending(failing);
                if recovered && index + 1 < kept.len() {
                    self.rewind(failing.offset + 1, Duration::ZERO);
                }
            }
            None if error.is_retryable() && attempt < spec.errors.max_attempts => {
                let delay = spec.errors.delay(attempt);
                tracing::warn!(
                    listener = spec.id, record = %kept[0].0.coordinates(), records = kept.len(),
                    attempt, ?delay, %error,
                    "batch handler failed; the batch will be delivered again"
                );
                self.failure = Some(Failure {
                    offset: head.offset,
                    attempts: attempt,
                    unrecovered: None,
                    recovery_failures: 0,
                });
                self.rewind(head.offset, delay);
            }
            None => self.recover_each(kept, error, attempt).await,
        }
    }

    /// Hands every record of a batch to the recoverer, in order; stops at the first that the
    /// recoverer fails on (it is tried again later, and the records after it delivered again).
    async fn recover_each(
        &mut self,
        kept: &[(RecordView<'_>, Delivery)],
        error: HandlerError,
        attempts: u32,
    ) {
        for (record, delivery) in kept {
            self.recover(&record.to_record(), *delivery, error.clone(), attempts, 0)
                .await;
            if self.failure.is_some() {
                return;
            }
        }
    }
}
