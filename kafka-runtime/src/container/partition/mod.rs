//! The task of one assigned partition: reads the partition's own queue, hands each record to the
//! handler in offset order, settles acknowledgments and failures, and offers the committable
//! offset to the committer.
//!
//! The task owns the partition's [`OffsetTracker`]: nothing else mutates it. Ack tokens reach it
//! as events on a channel; the consumer thread asks it to stop (revocation, shutdown) and waits
//! for its last word. Records are read straight from librdkafka's queue for this partition, so
//! no other task sits between the fetch and the handler. Reading stops while `max-in-flight`
//! records wait for their acknowledgment, and while a rewind's delay runs (the partition is
//! paused then, and the other partitions flow).

mod batch;
mod parallel;
mod seek;
mod transactional;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::{MessageStream, StreamPartitionQueue};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::committer::Committer;
use super::delivery::{self, Attempt, Begun, Delivered, Outcome};
use super::error_handler;
use super::tracker::{Delivery, OffsetTracker};
use super::ListenerSpec;
use crate::ack::{Ack, AckRoute};
use crate::config::{AckMode, Ordering};
use crate::context::AppContext;
use crate::control::{Paused, SeekTo};
use crate::extract::RecordContext;
use crate::handling::{AckEvent, AckKind, DeliveredBy, PendingReplies};
use crate::listener::{HandlerError, Invocation, Invoker};
use crate::management::health::PartitionProgress;
use crate::management::metrics::RecordMetrics;
use crate::record::{ConsumerRecord, Coordinates, RecordView};
use crate::template::SendError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The shortest wait before a failed dead-letter publication (or a failed seek) is tried again.
const RECOVERY_RETRY_MIN: Duration = Duration::from_secs(1);

/// What a partition task is made of.
pub(crate) struct PartitionSetup<C: ConsumerContext + 'static> {
    pub(crate) spec: Arc<ListenerSpec>,
    pub(crate) app: Arc<AppContext>,
    pub(crate) consumer: Arc<StreamConsumer<C>>,
    pub(crate) committer: Committer,
    pub(crate) progress: Arc<PartitionProgress>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Tells this task's offers from those of an earlier task of the same partition.
    pub(crate) owner: u64,
    /// The consumer's handler slots, shared by its partitions (`ordering` `key` or `none`).
    pub(crate) parallel: Arc<tokio::sync::Semaphore>,
    /// What the application paused of the listener: this partition reads nothing while covered.
    pub(crate) paused: watch::Receiver<Paused>,
    /// Seeks the application asks for.
    pub(crate) seeks: mpsc::UnboundedReceiver<SeekTo>,
}

/// A partition task's last word when asked to stop.
pub(crate) struct Stopped {
    pub(crate) owner: u64,
    pub(crate) committable: Option<i64>,
}

/// The record that failed last (Spring's `FailedRecordTracker`).
struct Failure {
    offset: i64,
    /// Failed deliveries so far.
    attempts: u32,
    /// Set when the recoverer itself failed: the next delivery goes straight back to it.
    unrecovered: Option<HandlerError>,
    /// Failed recoveries in a row, for the back-off between them.
    recovery_failures: u32,
}

/// How the replies a handler left on their way ended (see [`ListenerSpec::defers_replies`]).
struct Replied {
    delivery: Delivery,
    attempt: u32,
    result: Result<(), SendError>,
}

/// The replies of one delivery on their way.
struct Replying {
    delivery: Delivery,
    attempt: u32,
    pending: PendingReplies,
}

impl Future for Replying {
    type Output = Replied;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Replied> {
        self.pending.poll_unpin(cx).map(|result| Replied {
            delivery: self.delivery,
            attempt: self.attempt,
            result,
        })
    }
}

/// Reading waits until `until`: a rewind's delay, or a seek to try again.
struct Hold {
    until: Instant,
    seek: Option<i64>,
    /// The record that failed, at this offset, is kept and delivered again at `until`, before
    /// anything after it (which is still in the partition's queue): no seek, so no fetch to wait
    /// for.
    redeliver: Option<i64>,
}

pub(crate) struct PartitionTask<C: ConsumerContext + 'static> {
    setup: PartitionSetup<C>,
    /// Unique in the process: tells its ack tokens from those of every other task.
    id: u64,
    tracker: OffsetTracker,
    acks: mpsc::UnboundedReceiver<AckEvent>,
    ack_route: Arc<AckRoute>,
    metrics: RecordMetrics,
    failure: Option<Failure>,
    hold: Option<Hold>,
    /// Failed publications in a row of a batch's undecodable records, for the back-off.
    batch_recovery_failures: u32,
    /// The retry-topic record last held until its due time.
    held_until_due: Option<i64>,
    /// The last delivery handed to the handler, and its attempt.
    current: Option<(Delivery, u32)>,
    /// The last offset offered to the committer, and acknowledgments since.
    offered: Option<i64>,
    acked: u32,
    /// The partition's transactional producer (with `producer.transaction-id-prefix`).
    transaction: Option<Arc<crate::transaction::TransactionalProducer>>,
    /// A handler failed in the open transaction: abort it, and read again after this wait.
    aborting: Option<Duration>,
    /// Records handled whose replies are on their way: each is acknowledged once they are
    /// delivered.
    replies: FuturesUnordered<Replying>,
}

impl<C: ConsumerContext + 'static> PartitionTask<C> {
    pub(crate) fn new(setup: PartitionSetup<C>) -> Self {
        let (events, acks) = mpsc::unbounded_channel();
        let metrics = RecordMetrics::new(setup.spec.id, &setup.topic);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ack_route = Arc::new(AckRoute {
            events,
            task: id,
            topic: Arc::clone(&setup.topic),
            partition: setup.partition,
        });
        PartitionTask {
            setup,
            id,
            tracker: OffsetTracker::default(),
            acks,
            ack_route,
            metrics,
            failure: None,
            hold: None,
            batch_recovery_failures: 0,
            held_until_due: None,
            current: None,
            offered: None,
            acked: 0,
            transaction: None,
            aborting: None,
            replies: FuturesUnordered::new(),
        }
    }

    /// Runs until `stop` turns true (or its sender goes), then reports what may be committed.
    pub(crate) async fn run(
        mut self,
        queue: StreamPartitionQueue<C>,
        mut stop: watch::Receiver<bool>,
        stopped: std::sync::mpsc::Sender<Stopped>,
    ) {
        let mut stream = queue.stream();
        // Paused before the partition was assigned (a rebalance keeps a pause).
        self.setup.paused.mark_changed();
        if self.setup.spec.transactional.is_some() {
            // Before anything is read: initializing the partition's producer aborts the open
            // transaction of its previous owner, whose pending offsets would hold up the fetch
            // of the committed offset (KIP-447's stable offsets) until the transaction timeout.
            self.producer().await;
        }
        if let (Invoker::Record(invoke), Ordering::Key | Ordering::None) =
            (self.setup.spec.invoke, self.setup.spec.ordering)
        {
            self.run_parallel(invoke, &mut stream, &mut stop).await;
        } else {
            self.run_in_order(&mut stream, &mut stop).await;
        }
        self.finish_replies().await;
        self.drain_acks(None);
        // In transactions, offsets are committed only with them.
        let committable = self
            .setup
            .spec
            .transactional
            .is_none()
            .then(|| self.tracker.committable())
            .flatten();
        let _ = stopped.send(Stopped {
            owner: self.setup.owner,
            committable,
        });
    }

    /// One record of the partition at a time, in offset order, until `stop` turns true.
    async fn run_in_order<'q>(
        &mut self,
        stream: &mut MessageStream<'q, C>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let mut held: Option<BorrowedMessage<'q>> = None;
        while !*stop.borrow() {
            if self
                .hold
                .as_ref()
                .is_none_or(|hold| hold.redeliver.is_none())
            {
                // A rewind replaced the retry of the held record: it will be read again.
                held = None;
            }
            let hold = self.hold.as_ref().map(|hold| hold.until);
            let reading = hold.is_none()
                && !self.paused_by_application()
                && self.tracker.in_flight() < self.setup.spec.max_in_flight;
            tokio::select! {
                biased;
                changed = stop.changed() => if changed.is_err() { break },
                Ok(()) = self.setup.paused.changed() => self.apply_pause(),
                Some(to) = self.setup.seeks.recv() => {
                    self.seek_to(to).await;
                    held = None;
                }
                Some(event) = self.acks.recv() => {
                    self.on_ack(event, None);
                    self.drain_acks(None);
                    self.offer(true);
                    let busy = self.tracker.in_flight() > 0;
                    self.setup.progress.progressed(busy, std::time::Instant::now());
                }
                Some(replied) = self.replies.next(), if !self.replies.is_empty() => {
                    self.replied(replied);
                    self.drain_replies();
                    self.offer(true);
                    let busy = self.tracker.in_flight() > 0;
                    self.setup.progress.progressed(busy, std::time::Instant::now());
                }
                Some(message) = stream.next(), if reading => {
                    let first = self.accept(message);
                    match self.setup.spec.invoke {
                        Invoker::Record(invoke) => {
                            self.read_batch(invoke, first, (stream, &mut held), stop).await;
                        }
                        Invoker::Batch(invoke) => {
                            self.handle_batch(invoke, first, stream).await;
                        }
                    }
                }
                () = tokio::time::sleep_until(hold.unwrap_or_else(Instant::now)), if hold.is_some() => {
                    match (held.take(), self.setup.spec.invoke) {
                        (Some(message), Invoker::Record(invoke)) => {
                            self.hold = None;
                            let first = self.accept(Ok(message));
                            self.read_batch(invoke, first, (stream, &mut held), stop).await;
                        }
                        _ => self.release(),
                    }
                }
            }
        }
    }

    /// Handles `first` and the records that are ready after it, up to `max-poll-records`, then
    /// ends the batch (Spring's "records of one poll").
    /// A record that fails and is retried in place is kept in `held`.
    async fn read_batch<'q>(
        &mut self,
        invoke: fn(&mut RecordContext<'_>) -> Invocation,
        first: Option<(BorrowedMessage<'q>, Delivery)>,
        (stream, held): (&mut MessageStream<'q, C>, &mut Option<BorrowedMessage<'q>>),
        stop: &watch::Receiver<bool>,
    ) {
        if self.setup.spec.transactional.is_some() {
            return self.read_in_transaction(invoke, first, stream, stop).await;
        }
        let spec = Arc::clone(&self.setup.spec);
        let topic = Arc::clone(&self.setup.topic);
        let mut next = first;
        let mut handled = 0;
        // Records of a batch run back to back: one reading of the clock ends a delivery and
        // starts the next.
        let mut now = std::time::Instant::now();
        loop {
            if let Some((message, delivery)) = next.take() {
                let record = RecordView::of_message(&message, &topic);
                now = self.handle((&spec, invoke), record, delivery, now).await;
                handled += 1;
                if self
                    .hold
                    .as_ref()
                    .is_some_and(|hold| hold.redeliver.is_some())
                {
                    *held = Some(message);
                }
            }
            if self.tracker.in_flight() >= spec.max_in_flight {
                // Acknowledgments from other tasks, or delivered replies, may have freed room.
                self.drain_acks(None);
                self.drain_replies();
            }
            let full = self.tracker.in_flight() >= spec.max_in_flight;
            // A pause (or resume) ends the batch: the loop applies it.
            let pausing = self.setup.paused.has_changed().unwrap_or(false);
            if handled >= spec.max_poll_records
                || full
                || pausing
                || self.hold.is_some()
                || *stop.borrow()
            {
                break;
            }
            match stream.next().now_or_never() {
                Some(Some(message)) => next = self.accept(message),
                _ => break,
            }
        }
        self.offer(true);
    }

    /// Tracks a record read from the queue; it stays in librdkafka's buffer while it is handled.
    fn accept<'q>(
        &mut self,
        message: KafkaResult<BorrowedMessage<'q>>,
    ) -> Option<(BorrowedMessage<'q>, Delivery)> {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(
                    listener = self.setup.spec.id, topic = %self.setup.topic,
                    partition = self.setup.partition, %error, "consumer error"
                );
                return None;
            }
        };
        let Some(delivery) = self.tracker.track(message.offset()) else {
            tracing::debug!(
                record = %Coordinates(&self.setup.topic, self.setup.partition, message.offset()),
                "record from before a seek dropped"
            );
            return None;
        };
        Some((message, delivery))
    }

    /// One delivery of a record, started at `started`, and what its outcome leads to; returns
    /// when it ended.
    /// `spec` is the task's own (`self.setup.spec`), passed in so that no record touches the
    /// reference count that every partition task shares.
    async fn handle(
        &mut self,
        (spec, invoke): (&ListenerSpec, fn(&mut RecordContext<'_>) -> Invocation),
        record: RecordView<'_>,
        delivery: Delivery,
        started: std::time::Instant,
    ) -> std::time::Instant {
        if let Some(retry) = &spec.retry_topics {
            // Held once: a record back from its wait is due, whatever its (clamped) header says.
            let held = self.held_until_due.take() == Some(delivery.offset);
            if let Some(wait) = retry
                .wait_until_due(&record, &spec.main_topics)
                .filter(|_| !held)
            {
                // Not due yet: the partition waits and the record comes back when it is.
                self.held_until_due = Some(delivery.offset);
                self.rewind(delivery.offset, wait);
                return started;
            }
        }
        // Kept until its record comes back: a transaction's records before it come back first.
        let previous = match &self.failure {
            Some(failure) if failure.offset == delivery.offset => self.failure.take(),
            _ => None,
        };
        let attempt = previous.as_ref().map_or(1, |f| f.attempts + 1);
        self.setup.progress.handling(delivery.offset, started);
        let ended = if let Some(Failure {
            unrecovered: Some(error),
            attempts,
            recovery_failures,
            ..
        }) = previous
        {
            self.recover(
                &record.to_record(),
                delivery,
                error,
                attempts,
                recovery_failures,
            )
            .await;
            std::time::Instant::now()
        } else {
            self.current = Some((delivery, attempt));
            let ack = spec.ack_mode.is_manual().then(|| self.token(delivery));
            let attempt = self.attempt(attempt, started, delivery);
            let delivered = {
                let (app, metrics) = (&self.setup.app, &self.metrics);
                let mut arguments = Some((record, ack));
                let begun = std::future::poll_fn(|cx| match arguments.take() {
                    Some(record) => Poll::Ready(delivery::begin(
                        (spec, invoke),
                        app,
                        record,
                        (attempt, metrics),
                        cx,
                    )),
                    None => unreachable!("a ready poll_fn polled again"),
                })
                .await;
                match begun {
                    Begun::Ended(delivered) => delivered,
                    Begun::Running(running) => running.await,
                }
            };
            let (handled, ended) = (
                matches!(delivered.outcome, Outcome::Handled),
                delivered.ended,
            );
            if handled {
                self.settle_handled(
                    spec,
                    (delivered.settled, delivered.replies),
                    delivery,
                    attempt.number,
                );
            } else {
                // Nothing after the record was read: it can be kept for its retry.
                self.settle(spec, delivered, (record, true), delivery, attempt.number)
                    .await;
            }
            // Settling a failure may have published to a dead-letter topic meanwhile.
            if handled {
                ended
            } else {
                std::time::Instant::now()
            }
        };
        let busy = self.tracker.in_flight() > 0;
        self.setup.progress.progressed(busy, ended);
        ended
    }

    /// Settles a delivery whose handler returned `Ok`: its own ack or nack first, then the
    /// container's acknowledgment (ack modes `record`, `batch`, `time`, `count`), at once or once
    /// its replies are delivered.
    fn settle_handled(
        &mut self,
        spec: &ListenerSpec,
        (settled, replies): (Option<AckEvent>, Option<PendingReplies>),
        delivery: Delivery,
        attempt: u32,
    ) {
        if let Some(event) = settled {
            self.on_ack(event, None);
        }
        self.drain_acks(None);
        if let Some(pending) = replies {
            self.replies.push(Replying {
                delivery,
                attempt,
                pending,
            });
        } else if !spec.ack_mode.is_manual() {
            self.acknowledge(delivery);
        }
    }

    async fn settle(
        &mut self,
        spec: &ListenerSpec,
        Delivered {
            outcome,
            settled,
            replies,
            ..
        }: Delivered,
        (record, keep_for_retry): (RecordView<'_>, bool),
        delivery: Delivery,
        attempt: u32,
    ) {
        let error = match outcome {
            Outcome::Handled => {
                return self.settle_handled(spec, (settled, replies), delivery, attempt)
            }
            Outcome::Filtered | Outcome::Duplicate => return self.acknowledge(delivery),
            Outcome::Rejected(error) => {
                return self
                    .recover(&record.to_record(), delivery, error, attempt, 0)
                    .await
            }
            Outcome::Failed(error) if spec.transactional.is_some() => {
                return self.fail_in_transaction(delivery, error, attempt);
            }
            Outcome::Failed(error) => error,
        };
        // A failed handler usually drops its Ack on the way out: the failure decides, not that nack.
        if let Some(event) = settled {
            self.on_ack(event, Some(delivery));
        }
        self.drain_acks(Some(delivery));
        let coordinates = Coordinates(&self.setup.topic, self.setup.partition, delivery.offset);
        if !self.tracker.is_pending(delivery) {
            tracing::error!(
                listener = spec.id, record = %coordinates, %error,
                "handler failed after acknowledging the record; it stays acknowledged"
            );
            return;
        }
        if !spec.retries_in_place(&error, attempt) {
            return self
                .recover(&record.to_record(), delivery, error, attempt, 0)
                .await;
        }
        let delay = spec.errors.delay(attempt);
        tracing::warn!(
            listener = spec.id, record = %coordinates, attempt, ?delay, %error,
            "handler failed; the record will be delivered again"
        );
        self.failure = Some(Failure {
            offset: delivery.offset,
            attempts: attempt,
            unrecovered: None,
            recovery_failures: 0,
        });
        if keep_for_retry {
            self.retry_current(delivery.offset, delay);
        } else {
            self.rewind(delivery.offset, delay);
        }
    }

    /// Hands a record to the recoverer; acknowledges it once recovered, else keeps it
    /// uncommitted and tries again after a back-off that grows up to the error handler's
    /// longest interval.
    async fn recover(
        &mut self,
        record: &ConsumerRecord,
        delivery: Delivery,
        error: HandlerError,
        attempts: u32,
        recovery_failures: u32,
    ) {
        let spec = Arc::clone(&self.setup.spec);
        match error_handler::recover(&spec, record, &error, attempts, &self.metrics).await {
            Ok(()) => {
                self.setup.progress.recovery_failing(false);
                self.acknowledge(delivery);
            }
            Err(failed) => {
                let failures = recovery_failures.saturating_add(1);
                let coordinates = Coordinates(&record.topic, record.partition, record.offset);
                let delay = self.publication_failed(coordinates, &failed, failures);
                self.failure = Some(Failure {
                    offset: delivery.offset,
                    attempts,
                    unrecovered: Some(error),
                    recovery_failures: failures,
                });
                self.rewind(delivery.offset, delay);
            }
        }
    }

    /// A recoverer's publication of `record` failed, the `failures`th time in a row: counted,
    /// logged and shown in health; gives the wait before the next try (growing up to the error
    /// handler's longest interval).
    fn publication_failed(
        &self,
        record: Coordinates<'_>,
        failed: &error_handler::PublishFailed,
        failures: u32,
    ) -> Duration {
        let spec = &self.setup.spec;
        self.metrics.recovery_failures.increment(1);
        let delay = RECOVERY_RETRY_MIN
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(spec.errors.max_interval().max(RECOVERY_RETRY_MIN));
        tracing::error!(
            listener = spec.id, %record, topic = %failed.topic, error = %failed.error, failures,
            ?delay, "publication failed; the record stays uncommitted and will be tried again"
        );
        self.setup.progress.recovery_failing(true);
        delay
    }

    /// Delivery `number` of a record (or a batch from it), started at `started`, by this task.
    fn attempt(&self, number: u32, started: std::time::Instant, delivery: Delivery) -> Attempt {
        Attempt {
            number,
            started,
            delivered_by: DeliveredBy {
                task: self.id,
                epoch: delivery.epoch,
            },
        }
    }

    /// The ack token of `delivery` (manual ack modes).
    fn token(&self, delivery: Delivery) -> Ack {
        Ack::new(
            Arc::clone(&self.ack_route),
            (delivery.offset, delivery.epoch),
        )
    }

    /// Applies the acknowledgments queued so far; `ignoring` a nack of that delivery.
    fn drain_acks(&mut self, ignoring: Option<Delivery>) {
        while let Ok(event) = self.acks.try_recv() {
            self.on_ack(event, ignoring);
        }
    }

    fn on_ack(&mut self, event: AckEvent, ignoring: Option<Delivery>) {
        let delivery = Delivery {
            offset: event.offset,
            epoch: event.epoch,
        };
        match event.kind {
            AckKind::Ack => self.acknowledge(delivery),
            AckKind::AckFrom(first) => {
                let count = self.tracker.ack_range(first, event.offset, event.epoch);
                if count > 0 {
                    self.acknowledged(count);
                }
            }
            AckKind::Nack(_) | AckKind::Dropped if ignoring == Some(delivery) => {}
            AckKind::Dropped => {
                if self.tracker.is_pending(delivery) {
                    self.ack_dropped(delivery);
                    self.on_ack(
                        AckEvent {
                            kind: AckKind::Nack(Duration::ZERO),
                            ..event
                        },
                        ignoring,
                    );
                }
            }
            AckKind::Nack(delay) => {
                if !self.tracker.is_pending(delivery) {
                    return;
                }
                let attempts = match self.current {
                    Some((current, attempt)) if current == delivery => attempt,
                    _ => 1,
                };
                self.failure = Some(Failure {
                    offset: delivery.offset,
                    attempts,
                    unrecovered: None,
                    recovery_failures: 0,
                });
                self.rewind(delivery.offset, delay);
            }
        }
    }

    /// Applies the replies delivered (or failed) so far.
    fn drain_replies(&mut self) {
        while let Some(Some(replied)) = self.replies.next().now_or_never() {
            self.replied(replied);
        }
    }

    /// The replies of a record were delivered: it is acknowledged. Or one failed: that is a
    /// failed delivery of the record, read again after the back-off (what was handled after it
    /// too), or, with its attempts used up, handed straight to the recoverer when it is back.
    fn replied(
        &mut self,
        Replied {
            delivery,
            attempt,
            result,
        }: Replied,
    ) {
        let error = match result {
            Ok(()) => return self.acknowledge(delivery),
            // Rewound meanwhile: it is delivered again anyway.
            Err(_) if !self.tracker.is_pending(delivery) => return,
            Err(error) => crate::reply::not_sent(error),
        };
        self.metrics.failed.increment(1);
        let spec = &self.setup.spec;
        let retry = spec.retries_in_place(&error, attempt);
        let delay = if retry {
            spec.errors.delay(attempt)
        } else {
            Duration::ZERO
        };
        tracing::warn!(
            listener = spec.id,
            record = %Coordinates(&self.setup.topic, self.setup.partition, delivery.offset),
            attempt, ?delay, %error,
            "{}", if retry {
                "replies failed; the record will be delivered again"
            } else {
                "replies failed; the record goes to the recoverer"
            }
        );
        self.failure = Some(Failure {
            offset: delivery.offset,
            attempts: attempt,
            unrecovered: (!retry).then_some(error),
            recovery_failures: 0,
        });
        self.rewind(delivery.offset, delay);
    }

    /// Waits for the replies still on their way when the task stops, so that their records are
    /// committed now rather than handled again by the partition's next owner.
    async fn finish_replies(&mut self) {
        while let Some(Replied {
            delivery, result, ..
        }) = self.replies.next().await
        {
            match result {
                Ok(()) => self.acknowledge(delivery),
                Err(error) => tracing::warn!(
                    listener = self.setup.spec.id,
                    record = %Coordinates(&self.setup.topic, self.setup.partition, delivery.offset),
                    %error,
                    "a reply failed while the partition stopped; the record stays uncommitted"
                ),
            }
        }
    }

    /// A handler returned without settling the `Ack` of `delivery`, and dropped it.
    fn ack_dropped(&self, delivery: Delivery) {
        tracing::warn!(
            listener = self.setup.spec.id,
            record = %Coordinates(&self.setup.topic, self.setup.partition, delivery.offset),
            "Ack dropped without acknowledge() or nack(): the record will be redelivered"
        );
    }

    fn acknowledge(&mut self, delivery: Delivery) {
        if self.tracker.ack(delivery) {
            self.acknowledged(1);
        }
    }

    /// `count` records were acknowledged just now.
    fn acknowledged(&mut self, count: u32) {
        if let Some(committable) = self.tracker.committable() {
            self.setup.progress.committable(committable);
        }
        self.acked = self.acked.saturating_add(count);
        if matches!(
            self.setup.spec.ack_mode,
            AckMode::Record | AckMode::ManualImmediate
        ) {
            self.offer(false);
        }
    }

    /// Offers the committable offset when it moved (or, at a batch's end, when records were
    /// acknowledged since the last offer); the committer decides when it is committed.
    fn offer(&mut self, batch_end: bool) {
        let Some(committable) = self.tracker.committable() else {
            return;
        };
        if self.setup.spec.transactional.is_some() {
            // Committed with the transaction.
            return;
        }
        let moved = self.offered.is_none_or(|offered| committable > offered);
        if !(moved || batch_end && self.acked > 0) {
            return;
        }
        let partition = (Arc::clone(&self.setup.topic), self.setup.partition);
        let acked = std::mem::take(&mut self.acked);
        self.setup
            .committer
            .offer(partition, self.setup.owner, committable, acked, batch_end);
        self.offered = Some(committable);
    }

    /// Forgets `offset` and what follows, and reads again from it after `delay`: at once, or
    /// with the partition paused meanwhile.
    fn rewind(&mut self, offset: i64, delay: Duration) {
        if self
            .hold
            .as_ref()
            .is_some_and(|hold| hold.redeliver.is_some())
        {
            // The held record is read again from the seek instead.
            self.hold = None;
        }
        self.tracker.rewind(offset);
        let sought = self.seek(offset);
        if sought && delay.is_zero() {
            return;
        }
        self.pause(true);
        let wait = if sought {
            delay
        } else {
            delay.max(RECOVERY_RETRY_MIN)
        };
        self.hold = Some(Hold {
            until: after(wait),
            seek: (!sought).then_some(offset),
            redeliver: None,
        });
    }

    /// Delivers the record just handled, `offset`, again after `delay`: it is kept (see
    /// [`Hold::redeliver`]) and nothing after it is read meanwhile. Spring seeks instead; the
    /// fetch that follows a seek made a 100 ms back-off last 500 ms on the mock cluster
    /// (`fetch.wait.max.ms`) and 750 ms on tansu.
    fn retry_current(&mut self, offset: i64, delay: Duration) {
        self.tracker.rewind(offset);
        self.hold = Some(Hold {
            until: after(delay),
            seek: None,
            redeliver: Some(offset),
        });
    }

    /// Whether the application paused this partition (or its whole listener).
    fn paused_by_application(&self) -> bool {
        self.setup
            .paused
            .borrow()
            .covers(&self.setup.topic, self.setup.partition)
    }

    /// The application paused or resumed the listener: the partition is paused in librdkafka
    /// too (nothing more is fetched), or resumed unless a hold keeps it paused.
    fn apply_pause(&mut self) {
        let paused = self
            .setup
            .paused
            .borrow_and_update()
            .covers(&self.setup.topic, self.setup.partition);
        // A hold that sought back keeps the partition paused until its release; a retry in
        // place never paused it (and ends without a release).
        let held = self
            .hold
            .as_ref()
            .is_some_and(|hold| hold.redeliver.is_none());
        if paused {
            self.pause(true);
        } else if !held {
            self.pause(false);
        }
    }

    /// The hold is over: seek if the earlier seek failed, and read on.
    fn release(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        // A record to deliver again that was not kept is read again from its offset.
        if let Some(offset) = hold.seek.or(hold.redeliver) {
            if !self.seek(offset) {
                // Reading on would skip records: stay paused and try again.
                self.hold = Some(Hold {
                    until: after(RECOVERY_RETRY_MIN),
                    seek: Some(offset),
                    redeliver: None,
                });
                return;
            }
        }
        if !self.paused_by_application() {
            self.pause(false);
        }
    }

    fn seek(&self, offset: i64) -> bool {
        let (topic, partition) = (&*self.setup.topic, self.setup.partition);
        // Timeout zero: asynchronous, no broker round trip; librdkafka discards what it fetched
        // before the seek.
        match self
            .setup
            .consumer
            .seek(topic, partition, Offset::Offset(offset), Duration::ZERO)
        {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(
                    listener = self.setup.spec.id, topic, partition, offset, %error,
                    "seek failed; the partition stays paused and the seek is tried again"
                );
                false
            }
        }
    }

    fn pause(&self, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.setup.topic, self.setup.partition);
        let consumer = &self.setup.consumer;
        let result = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        if let Err(error) = result {
            tracing::debug!(
                topic = %self.setup.topic, partition = self.setup.partition, %error, pause,
                "cannot pause/resume partition"
            );
        }
    }
}

/// `wait` from now; a wait too long to represent (a user's nack delay) means a year.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}
