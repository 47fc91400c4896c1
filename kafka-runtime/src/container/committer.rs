//! One consumer's committer: the one place that decides when offsets are committed, and a
//! thread that commits them.
//!
//! Partition tasks offer the committable offset of their partition; the ack mode decides when
//! the offers are due (Spring's rules: after each record, at the end of a batch, every
//! `ack-time`, every `ack-count` acknowledgments). Commits are synchronous, off every tokio
//! thread: librdkafka gives no answer to an asynchronous commit here (`commit_callback` does not
//! fire), so a failure would go unnoticed and its latency unknown. Because every commit of the
//! consumer goes through this thread, per partition they are monotonic: an offer below what was
//! committed is never sent. A failed commit keeps its offsets (merged ones included) and is
//! sent again with a growing back-off until it lands or the partition is revoked.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::AckMode;
use crate::management::metrics::CommitMetrics;

/// Attempts of a commit someone waits for; a mock cluster answers REBALANCE_IN_PROGRESS while a
/// group joins.
const WAITED_ATTEMPTS: u32 = 3;
/// The back-off between attempts of a failed commit: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Sends one commit request to the broker and waits for the answer.
pub(crate) type CommitFn = Box<dyn Fn(&TopicPartitionList) -> Result<(), KafkaError> + Send>;

/// A partition as the committer knows it.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// When offers are due: the listener's ack mode and its counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) mode: AckMode,
    pub(crate) ack_count: u32,
    pub(crate) ack_time: Duration,
}

enum Request {
    /// A partition task starts: offers of its `owner` id are accepted from now on.
    Own(TopicPartition, u64),
    /// The committable offset of a partition; `acked` acknowledgments since the last offer;
    /// `batch_end` when the task finished a batch of records.
    Offer {
        partition: TopicPartition,
        owner: u64,
        offset: i64,
        acked: u32,
        batch_end: bool,
    },
    /// Commit these offsets and everything pending now, answer whether it landed, and then
    /// forget these partitions (revoked, or the consumer is closing).
    Flush(Vec<(TopicPartition, Option<i64>)>, SyncSender<bool>),
}

/// The sending half; the thread ends when every clone is dropped.
#[derive(Clone)]
pub(crate) struct Committer {
    requests: Sender<Request>,
}

impl Committer {
    /// Starts the committer thread of the consumer `name`.
    pub(crate) fn start(
        name: &str,
        schedule: Schedule,
        commit: CommitFn,
        metrics: CommitMetrics,
    ) -> std::io::Result<Self> {
        let (requests, receiver) = mpsc::channel();
        let mut thread = CommitThread {
            name: name.to_owned(),
            schedule,
            commit,
            metrics,
            partitions: HashMap::new(),
            acked: 0,
            batch_end: false,
            last_commit: Instant::now(),
            failures: 0,
            retry_at: None,
        };
        std::thread::Builder::new()
            .name(format!("kafka-commit-{name}"))
            .spawn(move || thread.run(&receiver))?;
        Ok(Committer { requests })
    }

    /// Accepts offers from the partition task `owner` of `partition` (and no other) from now on.
    pub(crate) fn own(&self, partition: TopicPartition, owner: u64) {
        // The thread only goes away with the consumer, when there is nothing left to commit.
        let _ = self.requests.send(Request::Own(partition, owner));
    }

    /// Offers the committable `offset` of `partition`.
    pub(crate) fn offer(
        &self,
        partition: TopicPartition,
        owner: u64,
        offset: i64,
        acked: u32,
        batch_end: bool,
    ) {
        let _ = self.requests.send(Request::Offer {
            partition,
            owner,
            offset,
            acked,
            batch_end,
        });
    }

    /// Commits `last` (each partition's final committable offset) and everything pending, then
    /// forgets those partitions; waits up to `timeout` for the answer. Blocks: call it from a
    /// thread of its own, never from a tokio worker.
    pub(crate) fn flush(
        &self,
        last: Vec<(TopicPartition, Option<i64>)>,
        timeout: Duration,
    ) -> bool {
        let (answer, answered) = mpsc::sync_channel(1);
        if self.requests.send(Request::Flush(last, answer)).is_err() {
            return false;
        }
        // No answer in time (or a thread gone) counts as a failed commit.
        answered.recv_timeout(timeout).unwrap_or(false)
    }
}

#[derive(Default)]
struct Offsets {
    owner: u64,
    offered: Option<i64>,
    committed: Option<i64>,
}

impl Offsets {
    /// The offset to send, when it is past what was committed.
    fn due(&self) -> Option<i64> {
        self.offered
            .filter(|offered| self.committed.is_none_or(|committed| *offered > committed))
    }
}

struct CommitThread {
    name: String,
    schedule: Schedule,
    commit: CommitFn,
    metrics: CommitMetrics,
    partitions: HashMap<TopicPartition, Offsets>,
    /// Acknowledgments offered since the last commit.
    acked: u64,
    /// A task finished a batch since the last commit.
    batch_end: bool,
    last_commit: Instant,
    /// Failed attempts in a row, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

impl CommitThread {
    fn run(&mut self, requests: &Receiver<Request>) {
        loop {
            let request = match self.wake_at() {
                None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => requests.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match request {
                Ok(request) => {
                    self.take(request);
                    while let Ok(request) = requests.try_recv() {
                        self.take(request);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.is_due() {
                self.commit_pending(1);
            }
        }
    }

    fn take(&mut self, request: Request) {
        match request {
            Request::Own(partition, owner) => {
                self.partitions.insert(
                    partition,
                    Offsets {
                        owner,
                        ..Offsets::default()
                    },
                );
            }
            Request::Offer {
                partition,
                owner,
                offset,
                acked,
                batch_end,
            } => {
                // Offers of a task that no longer owns the partition (revoked, timed out) are
                // dropped: committing them could move another member's offset.
                if let Some(offsets) = self.partitions.get_mut(&partition) {
                    if offsets.owner == owner {
                        offsets.offered = offsets.offered.max(Some(offset));
                        self.acked += u64::from(acked);
                        self.batch_end |= batch_end;
                    }
                }
            }
            Request::Flush(last, answer) => {
                for (partition, offset) in &last {
                    if let Some(offsets) = self.partitions.get_mut(partition) {
                        offsets.offered = offsets.offered.max(*offset);
                    }
                }
                let landed = self.commit_pending(WAITED_ATTEMPTS);
                for (partition, _) in &last {
                    self.partitions.remove(partition);
                }
                let _ = answer.send(landed);
            }
        }
    }

    /// Whether the ack mode commits pending offers once `ack-time` passed.
    fn commits_after_ack_time(&self) -> bool {
        matches!(
            self.schedule.mode,
            AckMode::Time | AckMode::CountTime | AckMode::Batch | AckMode::Manual
        )
    }

    /// When the thread must look again without a request: the next `ack-time`, or a retry.
    fn wake_at(&self) -> Option<Instant> {
        let pending = self.partitions.values().any(|o| o.due().is_some());
        if !pending {
            return None;
        }
        let timed = self
            .commits_after_ack_time()
            .then(|| self.last_commit + self.schedule.ack_time);
        match (timed, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Spring's ack modes, over what was offered since the last commit.
    fn is_due(&self) -> bool {
        if let Some(retry_at) = self.retry_at {
            return Instant::now() >= retry_at;
        }
        let elapsed = self.last_commit.elapsed() >= self.schedule.ack_time;
        let counted = self.acked >= u64::from(self.schedule.ack_count);
        match self.schedule.mode {
            AckMode::Record | AckMode::ManualImmediate => true,
            AckMode::Batch | AckMode::Manual => self.batch_end || elapsed,
            AckMode::Time => elapsed,
            AckMode::Count => counted,
            AckMode::CountTime => counted || elapsed,
        }
    }

    /// Commits every partition's offer past its committed offset; whether everything landed.
    fn commit_pending(&mut self, attempts: u32) -> bool {
        let due: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .filter_map(|(partition, offsets)| Some((partition.clone(), offsets.due()?)))
            .collect();
        self.acked = 0;
        self.batch_end = false;
        self.last_commit = Instant::now();
        if due.is_empty() {
            self.retry_at = None;
            return true;
        }
        let mut tpl = TopicPartitionList::with_capacity(due.len());
        for ((topic, partition), offset) in &due {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::error!(%topic, partition, offset, %error, "cannot build commit request");
            }
        }
        if let Err(error) = self.send(&tpl, attempts) {
            self.failures += 1;
            let delay = RETRY_FIRST
                .saturating_mul(1 << (self.failures - 1).min(16))
                .min(RETRY_MAX);
            self.retry_at = Some(Instant::now() + delay);
            tracing::warn!(
                consumer = %self.name, %error, offsets = ?tpl, failures = self.failures, retry_in = ?delay,
                "commit failed; sent again until it lands or the partitions are revoked (their records are delivered again if it never does)"
            );
            return false;
        }
        self.failures = 0;
        self.retry_at = None;
        for (partition, offset) in due {
            if let Some(offsets) = self.partitions.get_mut(&partition) {
                offsets.committed = offsets.committed.max(Some(offset));
            }
        }
        true
    }

    /// Sends the commit up to `attempts` times; the last attempt's error if none landed.
    fn send(&self, tpl: &TopicPartitionList, attempts: u32) -> Result<(), KafkaError> {
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = (self.commit)(tpl);
            self.metrics.seconds.record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    tracing::debug!(consumer = %self.name, offsets = ?tpl, "committed");
                    return Ok(());
                }
                Err(error) => {
                    self.metrics.failures.increment(1);
                    tracing::debug!(consumer = %self.name, %error, attempt, "commit failed");
                    if attempt >= attempts {
                        return Err(error);
                    }
                    std::thread::sleep(RETRY_FIRST * attempt);
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rdkafka::error::RDKafkaErrorCode;

    use super::*;

    /// A committer whose commits land in a log, failing the first `failures` of them.
    fn committer(mode: AckMode, failures: usize) -> (Committer, Arc<Mutex<Vec<i64>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::clone(&log);
        let remaining = Mutex::new(failures);
        let commit: CommitFn = Box::new(move |tpl| {
            let mut remaining = remaining.lock().expect("lock");
            if *remaining > 0 {
                *remaining -= 1;
                return Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            for element in tpl.elements() {
                if let Offset::Offset(offset) = element.offset() {
                    sent.lock().expect("lock").push(offset);
                }
            }
            Ok(())
        });
        let schedule = Schedule {
            mode,
            ack_count: 1,
            ack_time: Duration::from_secs(60),
        };
        let committer = Committer::start("test", schedule, commit, CommitMetrics::new("test"))
            .expect("thread starts");
        (committer, log)
    }

    fn partition() -> TopicPartition {
        (Arc::from("t"), 0)
    }

    fn eventually(log: &Mutex<Vec<i64>>, last: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.lock().expect("lock").last() != Some(&last) {
            assert!(Instant::now() < deadline, "{last} not committed: {log:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn commits_never_go_backwards_whatever_order_offers_arrive_in() {
        let (committer, log) = committer(AckMode::ManualImmediate, 0);
        committer.own(partition(), 1);
        for offset in [7, 6, 8, 3] {
            committer.offer(partition(), 1, offset, 1, false);
        }
        eventually(&log, 8);
        let sent = log.lock().expect("lock").clone();
        assert!(sent.windows(2).all(|w| w[0] < w[1]), "{sent:?}");
    }

    #[test]
    fn a_failed_commit_is_sent_again_with_what_was_merged_into_it() {
        let (committer, log) = committer(AckMode::ManualImmediate, 6);
        committer.own(partition(), 1);
        committer.offer(partition(), 1, 1, 1, false);
        eventually(&log, 1);
    }

    #[test]
    fn offers_of_a_former_owner_are_dropped() {
        let (committer, log) = committer(AckMode::Record, 0);
        committer.own(partition(), 1);
        committer.offer(partition(), 1, 5, 1, false);
        eventually(&log, 5);
        assert!(committer.flush(vec![(partition(), Some(6))], Duration::from_secs(5)));
        committer.offer(partition(), 1, 9, 1, false);
        committer.own(partition(), 2);
        committer.offer(partition(), 2, 4, 1, false);
        eventually(&log, 4);
        assert_eq!(*log.lock().expect("lock"), [5, 6, 4]);
    }

    #[test]
    fn batch_mode_waits_for_the_end_of_a_batch() {
        let (committer, log) = committer(AckMode::Batch, 0);
        committer.own(partition(), 1);
        committer.offer(partition(), 1, 3, 3, false);
        std::thread::sleep(Duration::from_millis(200));
        assert!(log.lock().expect("lock").is_empty());
        committer.offer(partition(), 1, 4, 1, true);
        eventually(&log, 4);
    }
}
