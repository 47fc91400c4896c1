//! What the health probes report: per consumer, whether its poll loop (the consumer thread) turns
//! and its partitions make progress, whether it joined its group and reaches a broker, its
//! partitions' lag, and whether dead-letter publication fails.
//!
//! Consumers write here from their threads, partition tasks and librdkafka callbacks; the
//! management endpoint reads it. Nothing here blocks a consumer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;
use serde_json::{json, Value};

use super::metrics;
use crate::config::ManagementSettings;
use crate::sync::lock;

/// Lag reports in a row above the threshold before the lag alert fires.
const LAG_REPORTS_TO_ALERT: u32 = 2;

/// The health of every consumer of an application.
pub(crate) struct Health {
    consumers: Mutex<Vec<Arc<ConsumerHealth>>>,
    stopping: AtomicBool,
    stuck_timeout: Duration,
    lag_threshold: Option<u64>,
    started: Instant,
}

impl Health {
    pub(crate) fn new(settings: &ManagementSettings) -> Arc<Self> {
        Arc::new(Health {
            consumers: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            stuck_timeout: settings.stuck_timeout,
            lag_threshold: settings.lag_alert_threshold,
            started: Instant::now(),
        })
    }

    /// Registers a consumer and returns the handle it reports through.
    pub(crate) fn consumer(
        &self,
        listener: &'static str,
        name: &str,
        group: &str,
    ) -> Arc<ConsumerHealth> {
        let consumer = Arc::new(ConsumerHealth {
            started: self.started,
            stuck_timeout: self.stuck_timeout,
            lag_threshold: self.lag_threshold,
            listener,
            name: name.to_owned(),
            group: group.to_owned(),
            last_turn_ms: AtomicU64::new(millis_since(self.started)),
            joined: AtomicBool::new(false),
            broker_up: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            partitions: Mutex::new(BTreeMap::new()),
            progress: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
        });
        lock(&self.consumers).push(Arc::clone(&consumer));
        consumer
    }

    /// Forgets `consumers`, stopped on purpose (a listener stopped, or one that failed to
    /// start): a stopped listener is neither dead nor unready.
    pub(crate) fn forget(&self, consumers: &[Arc<ConsumerHealth>]) {
        lock(&self.consumers)
            .retain(|consumer| !consumers.iter().any(|gone| Arc::ptr_eq(gone, consumer)));
    }

    /// The last reported lag of each partition of `listener`'s consumers, as `topic-partition`.
    pub(crate) fn lag_of(&self, listener: &str) -> BTreeMap<String, i64> {
        lock(&self.consumers)
            .iter()
            .filter(|consumer| consumer.listener == listener)
            .flat_map(|consumer| consumer.lag())
            .collect()
    }

    /// From now on readiness is down: the application is shutting down.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Liveness: every consumer's poll loop runs and has turned within `stuck-timeout`, no
    /// partition with work has gone that long without progress, and no partition task died.
    pub(crate) fn liveness(&self) -> Probe {
        let stopping = self.stopping.load(Ordering::Acquire);
        let problems: Vec<String> = lock(&self.consumers)
            .iter()
            .flat_map(|c| c.liveness_problems(stopping))
            .collect();
        Probe { problems }
    }

    /// Readiness: not shutting down, and every consumer joined its group and reaches a broker.
    pub(crate) fn readiness(&self) -> Probe {
        let mut problems = Vec::new();
        if self.stopping.load(Ordering::Acquire) {
            problems.push("shutting down".to_owned());
        }
        problems.extend(
            lock(&self.consumers)
                .iter()
                .flat_map(|c| c.readiness_problems()),
        );
        Probe { problems }
    }

    /// `/health`: both probes and every consumer's details.
    pub(crate) fn details(&self) -> Value {
        let liveness = self.liveness();
        let readiness = self.readiness();
        let consumers: Vec<Value> = lock(&self.consumers).iter().map(|c| c.details()).collect();
        let degraded = consumers.iter().any(|c| c["lag-status"] == "DEGRADED");
        let failing: Vec<Value> = consumers
            .iter()
            .flat_map(|c| {
                c["recovery-failing"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let status = if liveness.is_up() && readiness.is_up() {
            "UP"
        } else {
            "DOWN"
        };
        json!({
            "status": status,
            "liveness": liveness.to_json(),
            "readiness": readiness.to_json(),
            "lag": {
                "status": if degraded { "DEGRADED" } else { "OK" },
                "threshold": self.lag_threshold,
            },
            "recovery": {
                "status": if failing.is_empty() { "OK" } else { "DEGRADED" },
                "failing": failing,
            },
            "consumers": consumers,
        })
    }
}

/// One probe's verdict: up when nothing is wrong.
pub(crate) struct Probe {
    problems: Vec<String>,
}

impl Probe {
    pub(crate) fn is_up(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn to_json(&self) -> Value {
        if self.is_up() {
            json!({ "status": "UP" })
        } else {
            json!({ "status": "DOWN", "problems": self.problems })
        }
    }
}

/// A partition as the last statistics report saw it.
struct PartitionLag {
    lag: i64,
    /// Reports in a row above the alert threshold.
    above: u32,
}

/// What one consumer reports.
pub(crate) struct ConsumerHealth {
    /// The application's start, the origin of `last_turn_ms`.
    started: Instant,
    stuck_timeout: Duration,
    lag_threshold: Option<u64>,
    listener: &'static str,
    name: String,
    group: String,
    /// When the poll loop last turned, in ms since the application started.
    last_turn_ms: AtomicU64,
    joined: AtomicBool,
    broker_up: AtomicBool,
    stopped: AtomicBool,
    partitions: Mutex<BTreeMap<(String, i32), PartitionLag>>,
    /// The running partition tasks' progress.
    progress: Mutex<Vec<Arc<PartitionProgress>>>,
    /// Partition tasks that ended without being asked to (a panic outside the handler).
    failures: Mutex<Vec<String>>,
}

/// What one partition task reports: whether it has work, and when it last made progress.
pub(crate) struct PartitionProgress {
    started: Instant,
    name: String,
    last_progress_ms: AtomicU64,
    busy: AtomicBool,
    /// The offset whose handler runs, or -1.
    handling: AtomicI64,
    /// The partition's committable offset, or -1.
    committable: AtomicI64,
    recovery_failing: AtomicBool,
}

impl PartitionProgress {
    /// The handler of the record at `offset` starts, `now`.
    pub(crate) fn handling(&self, offset: i64, now: Instant) {
        self.handling.store(offset, Ordering::Relaxed);
        if !self.busy.swap(true, Ordering::Relaxed) {
            self.last_progress_ms
                .store(millis_between(self.started, now), Ordering::Relaxed);
        }
    }

    /// A record was settled `at`; `busy` while records still wait for their acknowledgment.
    pub(crate) fn progressed(&self, busy: bool, at: Instant) {
        self.handling.store(-1, Ordering::Relaxed);
        self.last_progress_ms
            .store(millis_between(self.started, at), Ordering::Relaxed);
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// The acknowledged prefix moved: `offset` may be committed.
    pub(crate) fn committable(&self, offset: i64) {
        self.committable.store(offset, Ordering::Relaxed);
    }

    /// The last committable offset reported, if any (for a task that cannot answer any more).
    pub(crate) fn last_committable(&self) -> Option<i64> {
        Some(self.committable.load(Ordering::Relaxed)).filter(|offset| *offset >= 0)
    }

    /// The offset whose handler runs now, if one does.
    pub(crate) fn handled_offset(&self) -> Option<i64> {
        Some(self.handling.load(Ordering::Relaxed)).filter(|offset| *offset >= 0)
    }

    /// Whether the recoverer fails to publish (a dead-letter topic refusing records).
    pub(crate) fn recovery_failing(&self, failing: bool) {
        if self.recovery_failing.swap(failing, Ordering::Relaxed) != failing && !failing {
            tracing::info!(partition = %self.name, "dead-letter publication works again");
        }
    }

    /// When it last made progress (or was created), and whether it has work now.
    pub(crate) fn last_progress(&self) -> (Instant, bool) {
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        (self.started + last, self.busy.load(Ordering::Relaxed))
    }

    /// How long the task has had work without progress, if it has work.
    fn stalled_for(&self) -> Option<Duration> {
        if !self.busy.load(Ordering::Relaxed) {
            return None;
        }
        let last = self.last_progress_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(
            millis_since(self.started).saturating_sub(last),
        ))
    }
}

impl ConsumerHealth {
    /// The poll loop turned.
    pub(crate) fn turned(&self) {
        self.last_turn_ms
            .store(millis_since(self.started), Ordering::Relaxed);
    }

    /// The group gave this consumer its partitions (possibly none): it joined, so it reached a broker.
    pub(crate) fn joined(&self) {
        self.joined.store(true, Ordering::Release);
        self.broker_up.store(true, Ordering::Release);
    }

    /// librdkafka lost every broker connection.
    pub(crate) fn brokers_down(&self) {
        if self.broker_up.swap(false, Ordering::AcqRel) {
            tracing::warn!(consumer = %self.name, "no broker reachable; readiness is down");
        }
    }

    /// Registers the task of an assigned partition and returns the handle it reports through.
    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Arc<PartitionProgress> {
        let progress = Arc::new(PartitionProgress {
            started: self.started,
            name: format!("{topic}-{partition}"),
            last_progress_ms: AtomicU64::new(millis_since(self.started)),
            busy: AtomicBool::new(false),
            handling: AtomicI64::new(-1),
            committable: AtomicI64::new(-1),
            recovery_failing: AtomicBool::new(false),
        });
        lock(&self.progress).push(Arc::clone(&progress));
        progress
    }

    /// The partition's task stopped (revoked, or the consumer closes).
    pub(crate) fn partition_gone(&self, progress: &Arc<PartitionProgress>) {
        lock(&self.progress).retain(|p| !Arc::ptr_eq(p, progress));
    }

    /// A partition task ended without being asked to: liveness is down from now on.
    pub(crate) fn task_failed(&self, problem: String) {
        tracing::error!(consumer = %self.name, "{problem}");
        lock(&self.failures).push(problem);
    }

    /// The poll loop ended.
    pub(crate) fn stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// A statistics report: broker states and the lag of this consumer's `assigned` partitions.
    pub(crate) fn statistics(&self, statistics: &Statistics, assigned: &[(String, i32)]) {
        let up = statistics
            .brokers
            .values()
            .any(|broker| broker.nodeid >= 0 && broker.state == "UP");
        if up {
            if !self.broker_up.swap(true, Ordering::AcqRel) && self.joined.load(Ordering::Acquire) {
                tracing::info!(consumer = %self.name, "broker reachable again");
            }
        } else {
            self.brokers_down();
        }
        let mut partitions = lock(&self.partitions);
        let previous = std::mem::take(&mut *partitions);
        for (topic, partition) in assigned {
            let reported = statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
                .map(|p| p.consumer_lag)
                .filter(|lag| *lag >= 0);
            // -1: no committed offset or no end offset yet, so the lag is unknown.
            let Some(lag) = reported else {
                continue;
            };
            metrics::lag(self.listener, &self.group, topic, *partition, lag);
            let key = (topic.clone(), *partition);
            let was_above = previous.get(&key).map_or(0, |p| p.above);
            let above = match self.lag_threshold {
                Some(threshold) if u64::try_from(lag).unwrap_or(0) > threshold => was_above + 1,
                _ => 0,
            };
            if above == LAG_REPORTS_TO_ALERT {
                tracing::warn!(
                    consumer = %self.name, group = %self.group, topic, partition, lag,
                    threshold = self.lag_threshold,
                    "consumer lag stays above lag-alert-threshold"
                );
            } else if above == 0 && was_above >= LAG_REPORTS_TO_ALERT {
                tracing::info!(
                    consumer = %self.name, topic, partition, lag,
                    "consumer lag back under lag-alert-threshold"
                );
            }
            partitions.insert(key, PartitionLag { lag, above });
        }
    }

    fn liveness_problems(&self, stopping: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.stopped.load(Ordering::Acquire) {
            if !stopping {
                problems.push(format!("consumer {}: its poll loop ended", self.name));
            }
            return problems;
        }
        let idle = self.idle();
        if idle > self.stuck_timeout {
            problems.push(format!(
                "consumer {}: poll loop stuck for {idle:?} (stuck-timeout {:?})",
                self.name, self.stuck_timeout
            ));
        }
        problems.extend(lock(&self.failures).iter().cloned());
        for progress in lock(&self.progress).iter() {
            if let Some(stalled) = progress.stalled_for().filter(|s| *s > self.stuck_timeout) {
                problems.push(format!(
                    "consumer {}: partition {} made no progress for {stalled:?} (stuck-timeout {:?})",
                    self.name, progress.name, self.stuck_timeout
                ));
            }
        }
        problems
    }

    fn readiness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.joined.load(Ordering::Acquire) {
            problems.push(format!(
                "consumer {}: no partition assignment yet from group {}",
                self.name, self.group
            ));
        }
        if !self.broker_up.load(Ordering::Acquire) {
            problems.push(format!("consumer {}: no broker connection", self.name));
        }
        problems
    }

    fn idle(&self) -> Duration {
        let last = self.last_turn_ms.load(Ordering::Relaxed);
        Duration::from_millis(millis_since(self.started).saturating_sub(last))
    }

    /// The last reported lag of each assigned partition, as `topic-partition`.
    fn lag(&self) -> BTreeMap<String, i64> {
        lock(&self.partitions)
            .iter()
            .map(|((topic, partition), p)| (format!("{topic}-{partition}"), p.lag))
            .collect()
    }

    fn details(&self) -> Value {
        let lag = self.lag();
        let degraded = lock(&self.partitions)
            .values()
            .any(|p| p.above >= LAG_REPORTS_TO_ALERT);
        let failing: Vec<String> = lock(&self.progress)
            .iter()
            .filter(|p| p.recovery_failing.load(Ordering::Relaxed))
            .map(|p| p.name.clone())
            .collect();
        json!({
            "listener": self.listener,
            "consumer": self.name,
            "group": self.group,
            "running": !self.stopped.load(Ordering::Acquire),
            "joined": self.joined.load(Ordering::Acquire),
            "broker-connected": self.broker_up.load(Ordering::Acquire),
            "last-poll-ms-ago": u64::try_from(self.idle().as_millis()).unwrap_or(u64::MAX),
            "lag": lag,
            "lag-status": if degraded { "DEGRADED" } else { "OK" },
            "recovery-status": if failing.is_empty() { "OK" } else { "DEGRADED" },
            "recovery-failing": failing,
        })
    }
}

fn millis_since(start: Instant) -> u64 {
    millis_between(start, Instant::now())
}

fn millis_between(start: Instant, end: Instant) -> u64 {
    u64::try_from(end.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}
