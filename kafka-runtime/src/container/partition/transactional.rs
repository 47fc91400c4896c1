//! A partition task's transactions (with `producer.transaction-id-prefix`), Spring's
//! `KafkaTransactionManager` on a listener container:
//!
//! - The records read together (one with ack mode `record`, up to `max-poll-records` with
//!   `batch`) are handled in one transaction: everything their handlers send through the
//!   template (replies too) and the partition's next offset, with the consumer's group
//!   metadata, commit together.
//! - A handler that fails aborts the transaction: nothing any record of it sent becomes
//!   visible to `read_committed` readers, and the partition is read again from the
//!   transaction's first record after the back-off (Spring's after-rollback processor). The
//!   failed record's attempts are counted; after the last one it goes to the recoverer, whose
//!   dead-letter publication is part of the next transaction.
//! - A record that failed before runs alone in its transaction: the records before it commit
//!   first, and its next failure discards nothing but its own output.
//! - A transaction that cannot commit is aborted and its records are read again; a producer
//!   that was fenced (another owner of the partition initialized one with its id) is replaced.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::MessageStream;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{PartitionTask, RECOVERY_RETRY_MIN};
use crate::config::AckMode;
use crate::container::tracker::Delivery;
use crate::extract::RecordContext;
use crate::listener::Invocation;
use crate::record::{Coordinates, RecordView};
use crate::transaction::{self, TransactionalProducer};

impl<C: ConsumerContext + 'static> PartitionTask<C> {
    /// Handles `first` and the records ready after it in one transaction, and commits it with
    /// the partition's next offset, or aborts it and reads them again.
    pub(super) async fn read_in_transaction<'q>(
        &mut self,
        invoke: fn(&mut RecordContext<'_>) -> Invocation,
        first: Option<(BorrowedMessage<'q>, Delivery)>,
        stream: &mut MessageStream<'q, C>,
        stop: &watch::Receiver<bool>,
    ) {
        let Some((message, delivery)) = first else {
            return;
        };
        let start = delivery.offset;
        let Some(producer) = self.producer().await else {
            return self.rewind(start, RECOVERY_RETRY_MIN);
        };
        if let Err(error) = producer.begin() {
            tracing::error!(listener = self.setup.spec.id, %error, "cannot begin a transaction");
            self.transaction = None;
            return self.rewind(start, RECOVERY_RETRY_MIN);
        }
        let (handled, unread) = transaction::scope(
            Arc::clone(&producer),
            self.handle_in_transaction(invoke, (message, delivery), stream, stop),
        )
        .await;
        match self.aborting.take() {
            None if self.hold.is_none() => {
                self.commit(&producer, start, handled).await;
                if let Some(offset) = unread.filter(|_| self.hold.is_none()) {
                    self.rewind(offset, Duration::ZERO);
                }
            }
            aborting => {
                // A handler failed, or a recovery could not publish: the wait it asked for.
                let wait = aborting
                    .or_else(|| {
                        self.hold.as_ref().map(|hold| {
                            hold.until
                                .saturating_duration_since(tokio::time::Instant::now())
                        })
                    })
                    .unwrap_or(RECOVERY_RETRY_MIN);
                self.abort(&producer).await;
                self.rewind(start, wait);
            }
        }
    }

    /// Handles the records of one transaction; returns how many, and the offset of a record
    /// read but left for the next transaction (one that failed before).
    async fn handle_in_transaction<'q>(
        &mut self,
        invoke: fn(&mut RecordContext<'_>) -> Invocation,
        first: (BorrowedMessage<'q>, Delivery),
        stream: &mut MessageStream<'q, C>,
        stop: &watch::Receiver<bool>,
    ) -> (u32, Option<i64>) {
        let spec = Arc::clone(&self.setup.spec);
        let topic = Arc::clone(&self.setup.topic);
        let mut next = Some(first);
        let mut handled = 0;
        let mut now = std::time::Instant::now();
        while let Some((message, delivery)) = next.take() {
            let failed_before = self
                .failure
                .as_ref()
                .is_some_and(|failure| failure.offset == delivery.offset);
            if failed_before && handled > 0 {
                return (handled, Some(delivery.offset));
            }
            let record = RecordView::of_message(&message, &topic);
            now = self.handle((&spec, invoke), record, delivery, now).await;
            handled += 1;
            let full =
                handled >= spec.max_poll_records || self.tracker.in_flight() >= spec.max_in_flight;
            if spec.ack_mode == AckMode::Record
                || failed_before
                || full
                || self.aborting.is_some()
                || self.hold.is_some()
                || *stop.borrow()
            {
                break;
            }
            if let Some(Some(message)) = stream.next().now_or_never() {
                next = self.accept(message);
            }
        }
        (handled, None)
    }

    /// This partition's transactional producer, made (and initialized, fencing the partition's
    /// previous owner) on first use; `None` if that failed (logged).
    pub(super) async fn producer(&mut self) -> Option<Arc<TransactionalProducer>> {
        if let Some(producer) = &self.transaction {
            return Some(Arc::clone(producer));
        }
        let spec = &self.setup.spec;
        let prefix = spec.transactional.as_deref()?;
        let id = format!(
            "{prefix}{}.{}.{}",
            spec.group, self.setup.topic, self.setup.partition
        );
        match self.setup.app.template().transactional_producer(id).await? {
            Ok(producer) => {
                self.transaction = Some(Arc::clone(&producer));
                Some(producer)
            }
            Err(error) => {
                tracing::error!(listener = spec.id, %error, "no transactional producer; retrying");
                None
            }
        }
    }

    /// Commits the transaction of the records from `start` with the partition's next offset;
    /// on failure aborts it and reads them again.
    async fn commit(&mut self, producer: &Arc<TransactionalProducer>, start: i64, handled: u32) {
        let Some(next) = self.tracker.committable() else {
            // Nothing of the partition acknowledged yet: nothing to commit with the records.
            tracing::warn!(
                listener = self.setup.spec.id, partition = self.setup.partition, start, handled,
                "a transaction without a committable offset is aborted; its records will be handled again"
            );
            self.abort(producer).await;
            return self.rewind(start, RECOVERY_RETRY_MIN);
        };
        let mut offsets = TopicPartitionList::new();
        let added = offsets.add_partition_offset(
            &self.setup.topic,
            self.setup.partition,
            Offset::Offset(next),
        );
        let group = self.setup.consumer.group_metadata();
        let result = match (added, group) {
            (Ok(()), Some(group)) => producer.commit(Some((offsets, group))).await,
            _ => {
                tracing::error!(
                    listener = self.setup.spec.id,
                    partition = self.setup.partition,
                    "no group metadata for the transaction's offsets; aborting"
                );
                self.abort(producer).await;
                return self.rewind(start, RECOVERY_RETRY_MIN);
            }
        };
        match result {
            Ok(()) => {
                self.setup.progress.committable(next);
                tracing::trace!(
                    listener = self.setup.spec.id,
                    record = %Coordinates(&self.setup.topic, self.setup.partition, next - 1),
                    records = handled,
                    "transaction committed"
                );
            }
            Err(error) => {
                tracing::warn!(
                    listener = self.setup.spec.id, partition = self.setup.partition, %error,
                    "transaction not committed; its records will be handled again"
                );
                if error.is_fatal() {
                    self.transaction = None;
                } else {
                    self.abort(producer).await;
                }
                self.rewind(start, RECOVERY_RETRY_MIN);
            }
        }
    }

    /// Aborts the transaction; a producer that cannot abort is replaced next time.
    async fn abort(&mut self, producer: &Arc<TransactionalProducer>) {
        if let Err(error) = producer.abort().await {
            tracing::warn!(listener = self.setup.spec.id, %error, "abort failed; a new producer takes over");
            self.transaction = None;
        }
    }

    /// A handler failed inside a transaction: counts the attempt, and asks for the
    /// transaction to be aborted and its records read again after the back-off (or, after the
    /// last attempt, for the record to go to the recoverer when it comes back).
    pub(super) fn fail_in_transaction(
        &mut self,
        delivery: Delivery,
        error: crate::listener::HandlerError,
        attempt: u32,
    ) {
        let spec = &self.setup.spec;
        let exhausted = !(error.is_retryable() && attempt < spec.errors.max_attempts);
        let delay = if exhausted {
            Duration::ZERO
        } else {
            spec.errors.delay(attempt)
        };
        tracing::warn!(
            listener = spec.id,
            record = %Coordinates(&self.setup.topic, self.setup.partition, delivery.offset),
            attempt, ?delay, %error,
            "handler failed; its transaction is aborted and its records will be handled again"
        );
        self.failure = Some(super::Failure {
            offset: delivery.offset,
            attempts: attempt,
            unrecovered: exhausted.then_some(error),
            recovery_failures: 0,
        });
        self.aborting = Some(delay);
    }
}
