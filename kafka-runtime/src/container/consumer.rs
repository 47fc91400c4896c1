//! One consumer of a listener container: its poll loop, its partitions and its commits.
//!
//! The poll loop is the only place that reads from the consumer, seeks and pauses. It routes each
//! record to its partition's worker, pauses a partition whose in-flight records reach
//! `max-in-flight`, serves rewinds (nacks and retries) with seek, and commits acknowledged offsets
//! per the ack mode. Revoked partitions commit synchronously in the rebalance callback.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::committer::Committer;
use super::partition::PartitionState;
use super::worker::{self, Job};
use super::ListenerSpec;
use crate::config::AckMode;
use crate::context::AppContext;
use crate::management::health::ConsumerHealth;
use crate::management::metrics::CommitMetrics;
use crate::record::ConsumerRecord;

/// How long a full partition may hold up reading before it is paused (see `PollLoop::gate`).
const GATE_PATIENCE: Duration = Duration::from_millis(100);
/// How long the final commit and the close may take at shutdown, and the longest wait for a
/// commit in the rebalance callback or of a `manual_immediate` acknowledgment.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) type ListenerConsumer = StreamConsumer<ContainerContext>;

/// Requests to the poll loop.
pub(crate) enum Command {
    /// Pause the partition, then after `delay` seek it back to `offset` and resume.
    Rewind {
        partition: Arc<PartitionState>,
        offset: i64,
        delay: Duration,
        epoch: u64,
    },
    /// The second half of a delayed rewind.
    Seek {
        partition: Arc<PartitionState>,
        offset: i64,
        epoch: u64,
    },
}

/// A partition the poll loop is dispatching.
struct Slot {
    state: Arc<PartitionState>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Records of the current batch, handed to the worker together at the batch's end.
    pending: Vec<Job>,
    /// The epoch of the last seek; records are dropped while the state's epoch is newer.
    dispatch_epoch: u64,
    paused_full: bool,
    paused_rewind: bool,
}

/// What the poll loop, the workers, the ack tokens and the rebalance callback share.
pub(crate) struct ConsumerShared {
    pub(crate) spec: Arc<ListenerSpec>,
    pub(crate) name: String,
    slots: Mutex<Vec<Slot>>,
    notify: Notify,
    dirty: AtomicBool,
    acked: AtomicU64,
    pub(crate) stopping: AtomicBool,
    /// The partitions the group gave this consumer, as (topic, partition).
    assigned: Mutex<Vec<(String, i32)>>,
    commands: mpsc::UnboundedSender<Command>,
    pub(crate) health: Arc<ConsumerHealth>,
    committer: OnceLock<Committer>,
    /// Reading waits for a full partition: every acknowledgment wakes the poll loop.
    gated: AtomicBool,
}

impl ConsumerShared {
    pub(crate) fn new(
        spec: Arc<ListenerSpec>,
        name: String,
        health: Arc<ConsumerHealth>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(ConsumerShared {
            spec,
            name,
            slots: Mutex::new(Vec::new()),
            notify: Notify::new(),
            dirty: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            assigned: Mutex::new(Vec::new()),
            commands,
            health,
            committer: OnceLock::new(),
            gated: AtomicBool::new(false),
        });
        (shared, receiver)
    }

    /// The partitions currently assigned to this consumer, sorted.
    pub(crate) fn assignment(&self) -> Vec<(String, i32)> {
        let mut assigned = self
            .assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assigned.sort();
        assigned
    }

    fn set_assignment(&self, tpl: &TopicPartitionList, assign: bool) {
        let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        for element in tpl.elements() {
            let entry = (element.topic().to_owned(), element.partition());
            assigned.retain(|e| *e != entry);
            if assign {
                assigned.push(entry);
            }
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn send(&self, command: Command) {
        // The receiver only goes away when the poll loop ended, and then nothing is to be done.
        let _ = self.commands.send(command);
        self.notify.notify_one();
    }

    /// Called on every acknowledgment; `advanced` when the committable offset moved.
    pub(crate) fn acknowledged(&self, partition: &PartitionState, advanced: bool) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if self.gated.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
        if !advanced {
            return;
        }
        if self.spec.ack_mode == AckMode::ManualImmediate {
            if let Some(offset) = partition.take_commit(false) {
                let mut tpl = TopicPartitionList::new();
                if add(&mut tpl, partition.topic(), partition.partition(), offset)
                    && !self.flush(tpl)
                {
                    partition.commit_failed(offset);
                }
            }
            return;
        }
        // One wake-up per commit cycle: the poll loop commits whatever was acknowledged by then.
        if !self.dirty.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Commits `tpl` after every commit queued before it and waits for the answer.
    fn flush(&self, tpl: TopicPartitionList) -> bool {
        self.committer
            .get()
            .is_some_and(|committer| committer.flush(tpl, CLOSE_TIMEOUT))
    }

    /// A commit failed: its offsets are committed again with the next commit.
    pub(crate) fn commit_failed(&self, tpl: &TopicPartitionList) {
        for slot in self.slots().iter() {
            for element in tpl.elements() {
                if element.topic() == slot.state.topic()
                    && element.partition() == slot.state.partition()
                {
                    if let Offset::Offset(offset) = element.offset() {
                        slot.state.commit_failed(offset);
                    }
                }
            }
        }
        self.dirty.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Stops dispatching `revoked` partitions and returns their offsets to commit.
    fn revoke(&self, revoked: &TopicPartitionList) -> TopicPartitionList {
        let mut commit = TopicPartitionList::new();
        let mut slots = self.slots();
        slots.retain(|slot| {
            let is_revoked = revoked.elements().iter().any(|e| {
                e.topic() == slot.state.topic() && e.partition() == slot.state.partition()
            });
            if is_revoked {
                if let Some(offset) = slot.state.revoke() {
                    add(
                        &mut commit,
                        slot.state.topic(),
                        slot.state.partition(),
                        offset,
                    );
                }
            }
            !is_revoked
        });
        commit
    }

    /// Collects offsets to commit from every partition.
    fn commit_list(&self, force: bool) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for slot in self.slots().iter() {
            if let Some(offset) = slot.state.take_commit(force) {
                add(&mut tpl, slot.state.topic(), slot.state.partition(), offset);
            }
        }
        tpl
    }
}

fn add(tpl: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64) -> bool {
    match tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(topic, partition, offset, %error, "cannot build commit request");
            false
        }
    }
}

/// The librdkafka callbacks of a container consumer.
pub(crate) struct ContainerContext {
    shared: Arc<ConsumerShared>,
}

impl ContainerContext {
    pub(crate) fn new(shared: Arc<ConsumerShared>) -> Self {
        ContainerContext { shared }
    }
}

impl ClientContext for ContainerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::log::librdkafka(&self.shared.name, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.shared.health.brokers_down();
        }
        tracing::warn!(consumer = %self.shared.name, %error, reason, "kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        self.shared
            .health
            .statistics(&statistics, &self.shared.assignment());
    }
}

impl ConsumerContext for ContainerContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                self.shared.set_assignment(revoked, false);
                let commit = self.shared.revoke(revoked);
                self.shared.flush(commit);
                tracing::info!(consumer = %self.shared.name, partitions = %names(revoked), "partitions revoked");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(consumer = %self.shared.name, %error, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            self.shared.set_assignment(assigned, true);
            self.shared.health.joined();
            // A partition paused under a previous assignment must not stay paused under this one.
            if let Err(error) = consumer.resume(assigned) {
                tracing::debug!(consumer = %self.shared.name, %error, "resume after assignment");
            }
            tracing::info!(consumer = %self.shared.name, partitions = %names(assigned), "partitions assigned");
        }
    }
}

fn names(tpl: &TopicPartitionList) -> String {
    let mut names: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}-{}", e.topic(), e.partition()))
        .collect();
    names.sort();
    names.join(", ")
}

/// The poll loop's consumer. Closing a consumer blocks until it left its group; when the loop is
/// dropped without `stop` (its runtime shutting down, a panic), the close happens on a thread of
/// its own, so that it never blocks or deadlocks an async thread.
struct ConsumerHandle(Option<Arc<ListenerConsumer>>);

impl ConsumerHandle {
    fn take(&mut self) -> Option<Arc<ListenerConsumer>> {
        self.0.take()
    }

    /// The consumer; `None` only once `stop` took it.
    fn get(&self) -> Option<&ListenerConsumer> {
        self.0.as_deref()
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-consumer-close".to_owned())
                .spawn(move || drop(consumer));
        }
    }
}

/// Runs one consumer until `shutdown` turns true.
pub(crate) async fn run(
    shared: Arc<ConsumerShared>,
    consumer: Arc<ListenerConsumer>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut shutdown: watch::Receiver<bool>,
    app: Arc<AppContext>,
) -> Vec<String> {
    match Committer::start(
        &shared.name,
        Arc::downgrade(&shared),
        Arc::downgrade(&consumer),
        CommitMetrics::new(shared.spec.id),
    ) {
        Ok(committer) => {
            let _ = shared.committer.set(committer);
        }
        Err(error) => {
            tracing::error!(consumer = %shared.name, %error, "cannot start the commit thread; the consumer stops");
            return Vec::new();
        }
    }
    let _stopped = StoppedMark(Arc::clone(&shared.health));
    let mut poll = PollLoop {
        shared: Arc::clone(&shared),
        // Moved in, so that an unexpected drop of this future closes the consumer off-thread.
        consumer: ConsumerHandle(Some(consumer)),
        app,
        workers: Vec::new(),
        batch: 0,
        last_commit: Instant::now(),
        full_since: None,
    };
    let spec = Arc::clone(&shared.spec);
    // Declared after `poll`, so dropped before it: the handle holds the last reference.
    let Some(consumer) = poll.consumer.0.clone() else {
        return Vec::new();
    };
    let mut tick = tokio::time::interval(spec.ack_time.min(spec.poll_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // Take what is ready without waiting; the batch ends when nothing is, when it is full,
        // or when a partition is.
        if poll.full_since.is_none() && poll.batch < spec.max_poll_records {
            if let Some(message) = consumer.recv().now_or_never() {
                poll.received(message);
                poll.maybe_commit(false);
                continue;
            }
        }
        poll.flush();
        shared.health.turned();
        poll.batch = 0;
        poll.maybe_commit(true);
        poll.resume_drained();
        let gate = poll.gate();
        let look_again = gate.unwrap_or_else(Instant::now);
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            Some(command) = commands.recv() => poll.command(command),
            message = consumer.recv(), if gate.is_none() => poll.received(message),
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep_until(look_again.into()), if gate.is_some() => {}
            _ = tick.tick() => {}
        }
    }
    drop(consumer);
    poll.stop().await
}

/// Marks the consumer stopped for liveness however its poll loop ends (a panic included).
struct StoppedMark(Arc<ConsumerHealth>);

impl Drop for StoppedMark {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

struct PollLoop {
    shared: Arc<ConsumerShared>,
    consumer: ConsumerHandle,
    app: Arc<AppContext>,
    workers: Vec<JoinHandle<()>>,
    batch: u32,
    last_commit: Instant,
    /// Since when a partition has been full (reading waits; see `gate`).
    full_since: Option<Instant>,
}

impl PollLoop {
    fn received(&mut self, message: Result<BorrowedMessage<'_>, KafkaError>) {
        match message {
            Ok(message) => self.dispatch(&message),
            Err(error) => tracing::warn!(consumer = %self.shared.name, %error, "consumer error"),
        }
        self.batch += 1;
    }

    fn dispatch(&mut self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let mut slots = self.shared.slots();
        let index = match slots
            .iter()
            .position(|s| s.state.partition() == partition && s.state.topic() == message.topic())
        {
            Some(index) => index,
            None => {
                let state = Arc::new(PartitionState::new(
                    Arc::from(message.topic()),
                    partition,
                    Arc::clone(&self.shared),
                ));
                let (jobs, receiver) = mpsc::unbounded_channel();
                self.workers.retain(|w| !w.is_finished());
                self.workers.push(tokio::spawn(worker::run(
                    Arc::clone(&state),
                    receiver,
                    Arc::clone(&self.shared),
                    Arc::clone(&self.app),
                )));
                let dispatch_epoch = state.epoch();
                slots.push(Slot {
                    state,
                    jobs,
                    pending: Vec::new(),
                    dispatch_epoch,
                    paused_full: false,
                    paused_rewind: false,
                });
                slots.len() - 1
            }
        };
        let slot = &mut slots[index];
        if slot.dispatch_epoch != slot.state.epoch() {
            // A rewind is pending: this record will be fetched again after the seek.
            return;
        }
        let record = ConsumerRecord::detach(message, slot.state.topic_arc());
        let in_flight = slot.state.dispatch(offset);
        slot.pending.push(Job {
            record,
            epoch: slot.dispatch_epoch,
        });
        if in_flight >= self.shared.spec.max_in_flight && !slot.paused_full {
            // Stop reading for now; `gate` pauses the partition if it stays full.
            self.full_since.get_or_insert_with(Instant::now);
            self.shared.gated.store(true, Ordering::Release);
        }
    }

    /// While a partition holds `max-in-flight` records, reading stops (the batch ends) instead of
    /// pausing it: pausing makes librdkafka drop what it prefetched for the partition, and in a
    /// backlog, where every partition keeps filling up, that costs far more than a short wait.
    /// A partition still full after `GATE_PATIENCE` (a slow handler) is paused, so that the
    /// others flow again. Returns when to look again, while reading waits.
    fn gate(&mut self) -> Option<Instant> {
        let since = self.full_since?;
        let max = self.shared.spec.max_in_flight;
        let patience_over = since.elapsed() >= GATE_PATIENCE;
        let mut full = false;
        let mut slots = self.shared.slots();
        for slot in slots.iter_mut().filter(|s| !s.paused_full) {
            if slot.state.in_flight() < max {
                continue;
            }
            if patience_over {
                tracing::debug!(
                    consumer = %self.shared.name, topic = slot.state.topic(), partition = slot.state.partition(),
                    "partition full for {GATE_PATIENCE:?}; pausing it"
                );
                slot.paused_full = true;
                if !slot.paused_rewind {
                    self.pause(&slot.state, true);
                }
            } else {
                full = true;
            }
        }
        drop(slots);
        if full {
            return Some(since + GATE_PATIENCE);
        }
        self.full_since = None;
        self.shared.gated.store(false, Ordering::Release);
        None
    }

    fn pause(&self, state: &PartitionState, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(state.topic(), state.partition());
        let Some(consumer) = self.consumer.get() else {
            return;
        };
        let result = if pause {
            consumer.pause(&tpl)
        } else {
            consumer.resume(&tpl)
        };
        if let Err(error) = result {
            tracing::warn!(
                consumer = %self.shared.name, topic = state.topic(), partition = state.partition(),
                %error, pause, "cannot pause/resume partition"
            );
        }
    }

    /// Hands the batch's records to their workers: one wake-up per worker and batch, not per record.
    fn flush(&mut self) {
        for slot in self.shared.slots().iter_mut() {
            for job in slot.pending.drain(..) {
                // A closed channel means the worker ended (revoked); the record is not committed.
                let _ = slot.jobs.send(job);
            }
        }
    }

    /// Resumes partitions paused at `max-in-flight` once half of their records are done.
    fn resume_drained(&mut self) {
        let limit = self.shared.spec.max_in_flight / 2;
        let mut slots = self.shared.slots();
        for slot in slots.iter_mut().filter(|s| s.paused_full) {
            if slot.state.in_flight() <= limit {
                slot.paused_full = false;
                if !slot.paused_rewind {
                    self.pause(&slot.state, false);
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Rewind {
                partition,
                offset,
                delay,
                epoch,
            } => {
                if delay.is_zero() {
                    self.seek(&partition, offset, epoch);
                    return;
                }
                let mut slots = self.shared.slots();
                let Some(slot) = slots.iter_mut().find(|s| Arc::ptr_eq(&s.state, &partition))
                else {
                    return;
                };
                if !slot.paused_rewind && !slot.paused_full {
                    self.pause(&partition, true);
                }
                slot.paused_rewind = true;
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    shared.send(Command::Seek {
                        partition,
                        offset,
                        epoch,
                    });
                });
            }
            Command::Seek {
                partition,
                offset,
                epoch,
            } => self.seek(&partition, offset, epoch),
        }
    }

    fn seek(&mut self, partition: &Arc<PartitionState>, offset: i64, epoch: u64) {
        if partition.epoch() != epoch {
            // A later rewind of the same partition supersedes this one.
            return;
        }
        let mut slots = self.shared.slots();
        let Some(slot) = slots.iter_mut().find(|s| Arc::ptr_eq(&s.state, partition)) else {
            return;
        };
        // Timeout zero: an asynchronous seek; librdkafka discards records fetched before it.
        let Some(consumer) = self.consumer.get() else {
            return;
        };
        if let Err(error) = consumer.seek(
            partition.topic(),
            partition.partition(),
            Offset::Offset(offset),
            Duration::ZERO,
        ) {
            tracing::warn!(
                consumer = %self.shared.name, topic = partition.topic(), partition = partition.partition(),
                offset, %error, "seek failed; the partition will be redelivered from its committed offset after a rebalance"
            );
        }
        slot.dispatch_epoch = epoch;
        if slot.paused_rewind {
            slot.paused_rewind = false;
            if !slot.paused_full {
                self.pause(partition, false);
            }
        }
    }

    /// Commits acknowledged offsets when the ack mode says it is time.
    fn maybe_commit(&mut self, batch_end: bool) {
        let shared = &self.shared;
        if !shared.dirty.load(Ordering::Acquire) {
            return;
        }
        let spec = &shared.spec;
        let elapsed = self.last_commit.elapsed() >= spec.ack_time;
        let counted = shared.acked.load(Ordering::Relaxed) >= u64::from(spec.ack_count);
        let due = match spec.ack_mode {
            AckMode::Record => true,
            AckMode::Batch | AckMode::Manual | AckMode::ManualImmediate => batch_end || elapsed,
            AckMode::Time => elapsed,
            AckMode::Count => counted,
            AckMode::CountTime => counted || elapsed,
        };
        if !due {
            return;
        }
        shared.dirty.store(false, Ordering::Release);
        shared.acked.store(0, Ordering::Relaxed);
        self.last_commit = Instant::now();
        let tpl = shared.commit_list(false);
        if tpl.count() == 0 {
            return;
        }
        if let Some(committer) = shared.committer.get() {
            committer.commit(tpl);
        }
    }

    /// Stops fetching, lets in-flight handlers finish within `shutdown-timeout`, commits what was
    /// acknowledged, leaves the group. Returns the records abandoned at the timeout (uncommitted,
    /// so they will be delivered again), as `topic-partition@offset`.
    async fn stop(mut self) -> Vec<String> {
        let shared = Arc::clone(&self.shared);
        shared.stopping.store(true, Ordering::Release);
        let mut workers = std::mem::take(&mut self.workers);
        let closing: Vec<Slot> = std::mem::take(&mut *shared.slots());
        let states: Vec<Arc<PartitionState>> =
            closing.iter().map(|s| Arc::clone(&s.state)).collect();
        drop(closing);
        let timeout = shared.spec.shutdown_timeout;
        let finished = tokio::time::timeout(timeout, async {
            for worker in &mut workers {
                let _ = worker.await;
            }
        })
        .await;
        let mut abandoned = Vec::new();
        if finished.is_err() {
            for worker in &workers {
                worker.abort();
            }
            for state in &states {
                abandoned.extend(
                    state
                        .unacknowledged()
                        .into_iter()
                        .map(|offset| format!("{}-{}@{offset}", state.topic(), state.partition())),
                );
            }
            tracing::error!(
                consumer = %shared.name, ?abandoned,
                "handlers still running after shutdown-timeout {timeout:?}; their records stay uncommitted and will be delivered again"
            );
        }
        let mut tpl = TopicPartitionList::new();
        for state in &states {
            if let Some(offset) = state.take_commit(true) {
                add(&mut tpl, state.topic(), state.partition(), offset);
            }
        }
        let consumer = self.consumer.take();
        let closing = Arc::clone(&shared);
        // The final commit and the close (leaving the group) block, without a timeout of their
        // own when the broker is gone: run them on a thread of their own, and wait a bounded time
        // so that a dead broker is reported, not hung on (nor is the runtime's shutdown).
        let (done, finished) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-consumer-close".to_owned())
            .spawn(move || {
                if consumer.is_some() {
                    closing.flush(tpl);
                }
                drop(consumer);
                let _ = done.send(());
            });
        let closed = match spawned {
            Ok(_) => tokio::time::timeout(CLOSE_TIMEOUT, finished).await.is_ok(),
            Err(error) => {
                tracing::warn!(consumer = %shared.name, %error, "cannot start the closing thread");
                false
            }
        };
        if closed {
            tracing::info!(consumer = %shared.name, "consumer stopped");
        } else {
            tracing::error!(
                consumer = %shared.name,
                "final commit and close did not finish within {CLOSE_TIMEOUT:?} (is the broker reachable?); \
                 records acknowledged since the last commit will be delivered again"
            );
        }
        abandoned
    }
}
