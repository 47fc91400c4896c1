//! One consumer of a listener container: a thread of its own that serves librdkafka's callbacks,
//! and a task per assigned partition.
//!
//! The consumer thread polls the consumer's main queue, where only events arrive: each assigned
//! partition's records go to that partition's own queue, split off in the assignment callback
//! before librdkafka starts fetching it, and read by the partition's task. Everything that
//! blocks runs on this thread, never on a tokio worker: rebalance callbacks, which stop the
//! revoked partitions' tasks, wait (up to `revoke-timeout`) for their handlers to finish, and
//! commit what was acknowledged before the partitions are given up; the final commit and the
//! close at shutdown. The thread also supervises the tasks: one that ends unasked (a panic
//! outside the handler) fails liveness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::ClientContext;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::assignment::ExplicitPartitions;
use super::committer::{CommitFn, Committer, TopicPartition};
use super::partition::{PartitionSetup, PartitionTask, Stopped};
use super::ListenerSpec;
use crate::context::AppContext;
use crate::control::{Paused, SeekTo};
use crate::events::{self, ConsumerEvent, ListenerEvents};
use crate::management::health::{ConsumerHealth, PartitionProgress};
use crate::sync::lock;

/// The longest the consumer thread sleeps between turns when nothing happens.
const TURN: Duration = Duration::from_millis(100);
/// How long the commit of revoked or closing partitions and the close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) type ListenerConsumer = StreamConsumer<ContainerContext>;

/// The consumer the committer commits through, until the consumer thread takes it away before
/// closing (so that the close, which blocks, happens on that thread and nowhere else).
type CommitTarget = Arc<RwLock<Option<Weak<ListenerConsumer>>>>;

/// The partitions the group gave a consumer, as (topic, partition).
#[derive(Clone, Default)]
pub(crate) struct Assignment(Arc<Mutex<Vec<(String, i32)>>>);

/// Where seeks reach the consumer's partition tasks (the application's `ListenerHandle::seek`).
#[derive(Clone, Default)]
pub(crate) struct Seeks(
    Arc<Mutex<HashMap<TopicPartition, tokio::sync::mpsc::UnboundedSender<SeekTo>>>>,
);

impl Seeks {
    /// Asks the task of `topic`-`partition` to seek; `false` when the consumer does not have
    /// the partition.
    pub(crate) fn send(&self, topic: &str, partition: i32, to: SeekTo) -> bool {
        let key: TopicPartition = (Arc::from(topic), partition);
        lock(&self.0)
            .get(&key)
            .is_some_and(|task| task.send(to).is_ok())
    }
}

impl Assignment {
    /// The assigned partitions, sorted.
    pub(crate) fn get(&self) -> Vec<(String, i32)> {
        let mut assigned = lock(&self.0).clone();
        assigned.sort();
        assigned
    }
}

/// A running partition task.
struct Running {
    owner: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    progress: Arc<PartitionProgress>,
}

#[derive(Default)]
struct Partitions {
    running: HashMap<TopicPartition, Running>,
    /// Tasks given up at a timeout that may still run: the partition's next task waits for them,
    /// so that two handlers of one partition never run at once.
    draining: HashMap<TopicPartition, JoinHandle<()>>,
}

/// The librdkafka callbacks of a container consumer, and what they need. They all run on the
/// consumer thread.
pub(crate) struct ContainerContext {
    pub(crate) name: String,
    spec: Arc<ListenerSpec>,
    app: Arc<AppContext>,
    health: Arc<ConsumerHealth>,
    runtime: tokio::runtime::Handle,
    committer: Committer,
    consumer: OnceLock<Weak<ListenerConsumer>>,
    target: CommitTarget,
    partitions: Mutex<Partitions>,
    assigned: Assignment,
    stopped: (Sender<Stopped>, Mutex<Receiver<Stopped>>),
    next_owner: AtomicU64,
    /// The consumer's handler slots with `ordering` `key` or `none` (`max-parallel`).
    parallel: Arc<tokio::sync::Semaphore>,
    /// What the application paused of the listener.
    paused: watch::Receiver<Paused>,
    /// When the consumer started, and when it last told the application it is idle.
    idle: (Instant, Mutex<Option<Instant>>),
    seeks: Seeks,
}

impl ContainerContext {
    pub(crate) fn new(
        name: String,
        spec: Arc<ListenerSpec>,
        app: Arc<AppContext>,
        (health, paused): (Arc<ConsumerHealth>, watch::Receiver<Paused>),
    ) -> std::io::Result<Self> {
        let target: CommitTarget = Arc::new(RwLock::new(None));
        let committer = Committer::start(
            &name,
            spec.commit_schedule(),
            commit_through(Arc::clone(&target)),
            crate::management::metrics::CommitMetrics::new(spec.id),
        )?;
        let (sender, receiver) = mpsc::channel();
        let parallel = Arc::new(tokio::sync::Semaphore::new(spec.max_parallel));
        Ok(ContainerContext {
            name,
            spec,
            app,
            health,
            runtime: tokio::runtime::Handle::current(),
            committer,
            consumer: OnceLock::new(),
            target,
            partitions: Mutex::new(Partitions::default()),
            assigned: Assignment::default(),
            stopped: (sender, Mutex::new(receiver)),
            next_owner: AtomicU64::new(1),
            parallel,
            paused,
            idle: (Instant::now(), Mutex::new(None)),
            seeks: Seeks::default(),
        })
    }

    /// Gives the callbacks the consumer they belong to.
    pub(crate) fn attach(&self, consumer: &Arc<ListenerConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
        *write(&self.target) = Some(Arc::downgrade(consumer));
    }

    /// The partitions the group gives this consumer, kept up to date.
    pub(crate) fn assignment(&self) -> Assignment {
        self.assigned.clone()
    }

    /// Where seeks reach this consumer's partitions.
    pub(crate) fn seeks(&self) -> Seeks {
        self.seeks.clone()
    }

    /// Which consumer an event to the application is about.
    fn event(&self) -> ConsumerEvent<'_> {
        ConsumerEvent {
            listener: self.spec.id,
            consumer: &self.name,
            group: &self.spec.group,
        }
    }

    /// Tells the application's event callbacks about `partitions`, with `tell`.
    fn tell_partitions(
        &self,
        partitions: &TopicPartitionList,
        tell: impl Fn(&dyn ListenerEvents, &ConsumerEvent<'_>, &[(String, i32)]),
    ) {
        let events = self.app.events();
        if events.is_empty() {
            return;
        }
        let list: Vec<(String, i32)> = partitions
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let consumer = self.event();
        events::tell(events, &consumer, |listener| {
            tell(listener, &consumer, &list)
        });
    }

    /// With `idle-event-interval`: tells the application when no partition of the consumer
    /// handled a record for the interval, and again every interval while that lasts.
    fn check_idle(&self) {
        let (Some(interval), events) = (self.spec.idle_event_interval, self.app.events()) else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let (started, told) = &self.idle;
        let (last, busy) = lock(&self.partitions).running.values().fold(
            (*started, false),
            |(last, busy), running| {
                let (progress, working) = running.progress.last_progress();
                (last.max(progress), busy || working)
            },
        );
        let now = Instant::now();
        {
            let mut told = lock(told);
            let since = told.map_or(last, |told| told.max(last));
            if busy || now.saturating_duration_since(since) < interval {
                return;
            }
            *told = Some(now);
        }
        let idle_for = now.saturating_duration_since(last);
        let consumer = self.event();
        events::tell(events, &consumer, |listener| {
            listener.idle(&consumer, idle_for)
        });
    }

    fn set_assignment(&self, tpl: &TopicPartitionList, assign: bool) {
        let mut assigned = lock(&self.assigned.0);
        for element in tpl.elements() {
            let entry = (element.topic().to_owned(), element.partition());
            assigned.retain(|e| *e != entry);
            if assign {
                assigned.push(entry);
            }
        }
    }

    /// Splits the partition's queue off (before librdkafka fetches it) and starts its task.
    fn start_partition(&self, topic: &str, partition: i32) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let Some(queue) = consumer.split_partition_queue(topic, partition) else {
            self.health.task_failed(format!(
                "consumer {}: cannot read partition {topic}-{partition} (no partition queue)",
                self.name
            ));
            return;
        };
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let key: TopicPartition = (Arc::from(topic), partition);
        self.committer.own(key.clone(), owner);
        let progress = self.health.partition(topic, partition);
        let (seek, seeks) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.seeks.0).insert(key.clone(), seek);
        let task = PartitionTask::new(PartitionSetup {
            spec: Arc::clone(&self.spec),
            app: Arc::clone(&self.app),
            consumer,
            committer: self.committer.clone(),
            progress: Arc::clone(&progress),
            topic: Arc::clone(&key.0),
            partition,
            owner,
            parallel: Arc::clone(&self.parallel),
            paused: self.paused.clone(),
            seeks,
        });
        let (stop, stopping) = watch::channel(false);
        let stopped = self.stopped.0.clone();
        let mut partitions = lock(&self.partitions);
        let earlier = partitions.draining.remove(&key);
        let task = self.runtime.spawn(async move {
            if let Some(earlier) = earlier {
                let _ = earlier.await;
            }
            task.run(queue, stopping, stopped).await;
        });
        let running = Running {
            owner,
            stop,
            task,
            progress,
        };
        partitions.running.insert(key, running);
    }

    /// Stops the tasks of `which`, waits up to `timeout` for their handlers, commits what was
    /// acknowledged and forgets the partitions. Returns the records whose handlers were still
    /// running at the timeout (uncommitted: they will be delivered again).
    fn stop_partitions(&self, which: &[TopicPartition], timeout: Duration) -> Vec<String> {
        {
            let mut seeks = lock(&self.seeks.0);
            for key in which {
                seeks.remove(key);
            }
        }
        let stopping: Vec<(TopicPartition, Running)> = {
            let mut partitions = lock(&self.partitions);
            which
                .iter()
                .filter_map(|key| Some((key.clone(), partitions.running.remove(key)?)))
                .collect()
        };
        for (_, running) in &stopping {
            let _ = running.stop.send(true);
        }
        let mut last = self.wait_stopped(&stopping, timeout);
        let mut commits = Vec::new();
        let mut abandoned = Vec::new();
        let mut ending = Vec::new();
        for (key, running) in stopping {
            self.health.partition_gone(&running.progress);
            match last.remove(&running.owner) {
                Some(stopped) => {
                    commits.push((key, stopped.committable));
                    ending.push(running.task);
                }
                None => {
                    let (topic, partition) = (&key.0, key.1);
                    if let Some(offset) = running.progress.handled_offset() {
                        abandoned.push(format!("{topic}-{partition}@{offset}"));
                    }
                    running.task.abort();
                    lock(&self.partitions)
                        .draining
                        .insert(key.clone(), running.task);
                    commits.push((key, running.progress.last_committable()));
                }
            }
        }
        // Answered tasks are about to end: let them drop their references to the consumer here,
        // so that the consumer is never destroyed on a tokio worker.
        let deadline = Instant::now() + Duration::from_secs(1);
        while ending.iter().any(|task| !task.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if !abandoned.is_empty() {
            tracing::error!(
                consumer = %self.name, ?abandoned,
                "handlers still running after {timeout:?}; their records stay uncommitted and will be delivered again"
            );
        }
        if !commits.is_empty() && !self.committer.flush(commits, CLOSE_TIMEOUT) {
            tracing::error!(
                consumer = %self.name,
                "the commit of the partitions given up failed; records acknowledged since the last commit will be delivered again"
            );
        }
        abandoned
    }

    /// The tasks' last words, by owner, until all answered, ended, or `timeout` passed.
    fn wait_stopped(
        &self,
        stopping: &[(TopicPartition, Running)],
        timeout: Duration,
    ) -> HashMap<u64, Stopped> {
        let deadline = Instant::now() + timeout;
        let receiver = lock(&self.stopped.1);
        let mut last = HashMap::new();
        loop {
            let answered = |r: &Running| last.contains_key(&r.owner) || r.task.is_finished();
            if stopping.iter().all(|(_, running)| answered(running)) {
                // A task that ended answered first (it answers as its last act), unless it failed.
                while let Ok(stopped) = receiver.try_recv() {
                    last.insert(stopped.owner, stopped);
                }
                return last;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return last;
            }
            match receiver.recv_timeout(left.min(TURN)) {
                Ok(stopped) => {
                    last.insert(stopped.owner, stopped);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return last,
            }
        }
    }

    /// Takes `assigned` up once librdkafka assigned it: shown in `/listeners` and `/health`,
    /// paused or resumed as the application wants, told to the application's callbacks.
    fn assigned<C: Consumer<Self>>(&self, consumer: &C, assigned: &TopicPartitionList) {
        self.set_assignment(assigned, true);
        self.health.joined();
        // A partition paused under a previous assignment must not stay paused under this one,
        // unless the application paused it: then it is paused (again) now that it is
        // assigned, so that nothing is fetched for it.
        let (mut resumed, mut held) = (TopicPartitionList::new(), TopicPartitionList::new());
        {
            let paused = self.paused.borrow();
            for element in assigned.elements() {
                let list = if paused.covers(element.topic(), element.partition()) {
                    &mut held
                } else {
                    &mut resumed
                };
                list.add_partition(element.topic(), element.partition());
            }
        }
        let resumed = consumer.resume(&resumed);
        let held = if held.count() > 0 {
            consumer.pause(&held)
        } else {
            Ok(())
        };
        if let Err(error) = resumed.and(held) {
            tracing::debug!(consumer = %self.name, %error, "resume after assignment");
        }
        tracing::info!(consumer = %self.name, partitions = %names(assigned), "partitions assigned");
        self.tell_partitions(assigned, |listener, consumer, partitions| {
            listener.partitions_assigned(consumer, partitions);
        });
    }

    /// Assigns the listener's explicit partitions of this consumer (`share`), each at its
    /// initial offset, starting their tasks first.
    fn assign_explicitly(
        &self,
        consumer: &ListenerConsumer,
        explicit: &ExplicitPartitions,
        share: &[(String, i32)],
    ) {
        let (positions, error) = explicit.positions(consumer, share);
        if let Some(error) = error {
            tracing::error!(
                consumer = %self.name, %error,
                "cannot look up the initial offsets of {explicit}; reading from the committed offsets"
            );
        }
        for (topic, partition) in share {
            self.start_partition(topic, *partition);
        }
        if let Err(error) = consumer.assign(&positions) {
            self.health.task_failed(format!(
                "consumer {}: cannot assign {}: {error}",
                self.name,
                names(&positions)
            ));
            return;
        }
        self.assigned(consumer, &positions);
    }

    /// Fails liveness for every task that ended without being asked to.
    fn supervise(&self) {
        let mut partitions = lock(&self.partitions);
        let ended: Vec<TopicPartition> = partitions
            .running
            .iter()
            .filter(|(_, running)| running.task.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            let Some(running) = partitions.running.remove(&key) else {
                continue;
            };
            self.health.partition_gone(&running.progress);
            let cause = match running.task.now_or_never() {
                Some(Err(error)) if error.is_panic() => {
                    crate::listener::HandlerError::panic(error.into_panic().as_ref()).to_string()
                }
                Some(Err(error)) => error.to_string(),
                _ => "it returned".to_owned(),
            };
            self.health.task_failed(format!(
                "consumer {}: the task of partition {}-{} ended unexpectedly ({cause}); the partition is not consumed",
                self.name, key.0, key.1
            ));
        }
    }
}

/// Commits through the consumer in `target`, while it is there.
fn commit_through(target: CommitTarget) -> CommitFn {
    Box::new(move |tpl| {
        let target = read(&target);
        let consumer = target
            .as_ref()
            .and_then(Weak::upgrade)
            .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::BrokerDestroy))?;
        consumer.commit(tpl, CommitMode::Sync)
    })
}

impl ClientContext for ContainerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::log::librdkafka(&self.name, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.brokers_down();
        }
        tracing::warn!(consumer = %self.name, %error, reason, "kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        self.health.statistics(&statistics, &self.assigned.get());
    }
}

impl ConsumerContext for ContainerContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                // Before librdkafka's assign: a queue split now is never fed to the main queue.
                for element in assigned.elements() {
                    self.start_partition(element.topic(), element.partition());
                }
            }
            Rebalance::Revoke(revoked) => {
                self.set_assignment(revoked, false);
                let keys: Vec<TopicPartition> = revoked
                    .elements()
                    .iter()
                    .map(|e| (Arc::from(e.topic()), e.partition()))
                    .collect();
                self.stop_partitions(&keys, self.spec.revoke_timeout);
                tracing::info!(consumer = %self.name, partitions = %names(revoked), "partitions revoked");
                self.tell_partitions(revoked, |listener, consumer, partitions| {
                    listener.partitions_revoked(consumer, partitions);
                });
            }
            Rebalance::Error(error) => {
                tracing::warn!(consumer = %self.name, %error, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            self.assigned(consumer, assigned);
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

/// How a consumer thread ended: the records abandoned at `shutdown-timeout`, then whether the
/// close (leaving the group) finished.
pub(crate) struct Ending {
    pub(crate) abandoned: oneshot::Receiver<Vec<String>>,
    pub(crate) closed: oneshot::Receiver<()>,
}

/// Starts the thread of `consumer`; it runs until `shutdown` turns true (or its sender goes).
/// With explicit partitions, it assigns this consumer's `share` of them first.
pub(crate) fn start(
    consumer: Arc<ListenerConsumer>,
    share: Option<Vec<(String, i32)>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<Ending> {
    let stop = Arc::new(AtomicBool::new(false));
    let (abandoned, abandoned_rx) = oneshot::channel();
    let (closed, closed_rx) = oneshot::channel();
    let name = consumer.context().name.clone();
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("kafka-consumer-{name}"))
            .spawn(move || {
                let report = serve(&consumer, share.as_deref(), &stop);
                let _ = abandoned.send(report);
                close(consumer);
                let _ = closed.send(());
            })?
    };
    let thread = thread.thread().clone();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
        stop.store(true, Ordering::Release);
        thread.unpark();
    });
    Ok(Ending {
        abandoned: abandoned_rx,
        closed: closed_rx,
    })
}

/// Wakes the consumer thread when librdkafka's main queue has something.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Serves the main queue until `stop`, then stops every partition; the abandoned records.
fn serve(
    consumer: &Arc<ListenerConsumer>,
    share: Option<&[(String, i32)]>,
    stop: &AtomicBool,
) -> Vec<String> {
    let context = consumer.context();
    if let (Some(explicit), Some(share)) = (&context.spec.explicit, share) {
        context.assign_explicitly(consumer, explicit, share);
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut stream = consumer.stream();
    while !stop.load(Ordering::Acquire) {
        context.health.turned();
        context.supervise();
        context.check_idle();
        match stream.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(message))) => context.health.task_failed(format!(
                "consumer {}: a record of {}-{} reached the main queue; its partition is not consumed",
                context.name,
                message.topic(),
                message.partition()
            )),
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(consumer = %context.name, %error, "consumer error");
            }
            Poll::Ready(None) => break,
            Poll::Pending => std::thread::park_timeout(context.spec.poll_timeout.min(TURN)),
        }
    }
    drop(stream);
    let all: Vec<TopicPartition> = lock(&context.partitions).running.keys().cloned().collect();
    context.stop_partitions(&all, context.spec.shutdown_timeout)
}

/// Leaves the group and destroys the consumer, here: once the committer can no longer reach it
/// and the partition tasks let go of it, this is the last reference.
fn close(consumer: Arc<ListenerConsumer>) {
    let context = consumer.context();
    write(&context.target).take();
    let draining: Vec<JoinHandle<()>> = lock(&context.partitions)
        .draining
        .drain()
        .map(|(_, task)| task)
        .collect();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while draining.iter().any(|task| !task.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let name = context.name.clone();
    let health = Arc::clone(&context.health);
    drop(consumer);
    health.stopped();
    tracing::info!(consumer = %name, "consumer stopped");
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
