//! One consumer's committer: a thread that sends its offset commits one at a time.
//!
//! librdkafka gives no answer to an asynchronous commit here (`commit_callback` does not fire),
//! so a failed commit would go unnoticed and its latency unknown. The committer commits
//! synchronously off the poll loop instead: each answer is measured, a failure is handed back
//! to the partitions so that the next commit carries the offset again, and because every commit
//! of the consumer goes through this one thread, a later commit never lands before an earlier
//! one (which would move the committed offset backwards).

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Weak;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use super::consumer::{ConsumerShared, ListenerConsumer};
use crate::management::metrics::CommitMetrics;

/// Attempts of a commit someone waits for; a mock cluster answers REBALANCE_IN_PROGRESS while a
/// group joins.
const WAITED_ATTEMPTS: u32 = 3;

enum Request {
    /// Commit when possible; a failure is retried by a later commit.
    Commit(TopicPartitionList),
    /// Commit now, retrying a few times, and answer whether it succeeded.
    Flush(TopicPartitionList, SyncSender<bool>),
}

/// The sending half; the thread ends when it is dropped.
pub(crate) struct Committer {
    requests: Sender<Request>,
}

impl Committer {
    /// Starts the thread of the consumer `name`.
    pub(crate) fn start(
        name: &str,
        shared: Weak<ConsumerShared>,
        consumer: Weak<ListenerConsumer>,
        metrics: CommitMetrics,
    ) -> std::io::Result<Self> {
        let (requests, receiver) = mpsc::channel();
        let worker = Worker {
            name: name.to_owned(),
            shared,
            consumer,
            metrics,
        };
        std::thread::Builder::new()
            .name(format!("kafka-commit-{name}"))
            .spawn(move || worker.run(&receiver))?;
        Ok(Committer { requests })
    }

    /// Queues a commit; failures come back to the partitions as offsets to commit again.
    pub(crate) fn commit(&self, tpl: TopicPartitionList) {
        // The thread only goes away with the consumer, when there is nothing left to commit.
        let _ = self.requests.send(Request::Commit(tpl));
    }

    /// Commits after every queued commit and waits up to `timeout` for the answer.
    pub(crate) fn flush(&self, tpl: TopicPartitionList, timeout: Duration) -> bool {
        if tpl.count() == 0 {
            return true;
        }
        let (answer, answered) = mpsc::sync_channel(1);
        if self.requests.send(Request::Flush(tpl, answer)).is_err() {
            return false;
        }
        // No answer in time (or a thread gone) counts as a failed commit.
        answered.recv_timeout(timeout).unwrap_or(false)
    }
}

struct Worker {
    name: String,
    shared: Weak<ConsumerShared>,
    consumer: Weak<ListenerConsumer>,
    metrics: CommitMetrics,
}

impl Worker {
    fn run(self, requests: &Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            // Commits queued meanwhile are merged: one round trip carries the newest offsets.
            let mut pending = None;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Commit(tpl) => pending = Some(merge(pending, &tpl)),
                    Request::Flush(tpl, answer) => {
                        let tpl = merge(pending.take(), &tpl);
                        let _ = answer.send(self.commit(&tpl, WAITED_ATTEMPTS));
                    }
                }
                next = requests.try_recv().ok();
            }
            if let Some(tpl) = pending {
                if !self.commit(&tpl, 1) {
                    if let Some(shared) = self.shared.upgrade() {
                        shared.commit_failed(&tpl);
                    }
                }
            }
        }
    }

    fn commit(&self, tpl: &TopicPartitionList, attempts: u32) -> bool {
        if tpl.count() == 0 {
            return true;
        }
        let Some(consumer) = self.consumer.upgrade() else {
            return false;
        };
        for attempt in 1..=attempts {
            let started = Instant::now();
            let result = consumer.commit(tpl, CommitMode::Sync);
            self.metrics.seconds.record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    tracing::debug!(consumer = %self.name, offsets = ?tpl, "committed");
                    return true;
                }
                Err(error) => {
                    self.metrics.failures.increment(1);
                    if attempt < attempts {
                        tracing::debug!(consumer = %self.name, %error, attempt, "commit failed, retrying");
                        std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                    } else {
                        tracing::warn!(
                            consumer = %self.name, %error, offsets = ?tpl,
                            "commit failed; it is sent again with the next commit, and its records are delivered again if it never succeeds"
                        );
                    }
                }
            }
        }
        false
    }
}

/// `base` with `newer`'s offsets added or replacing base's (offsets only grow).
fn merge(base: Option<TopicPartitionList>, newer: &TopicPartitionList) -> TopicPartitionList {
    let Some(mut merged) = base else {
        return newer.clone();
    };
    for element in newer.elements() {
        let (topic, partition, offset) = (element.topic(), element.partition(), element.offset());
        // Adding a partition twice would list it twice: replace the offset of a listed one.
        let result = if merged.find_partition(topic, partition).is_some() {
            merged.set_partition_offset(topic, partition, offset)
        } else {
            merged.add_partition_offset(topic, partition, offset)
        };
        if let Err(error) = result {
            tracing::error!(topic, partition, %error, "cannot merge commits");
        }
    }
    merged
}
