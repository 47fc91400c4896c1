//! Per-partition acknowledgment tracking: which handed-out offsets are done, and what may be committed.
//!
//! Records of a partition are handed out in offset order and acknowledged in any order. The
//! committable offset is one past the end of the acknowledged prefix, so a commit never passes an
//! unacknowledged record. A nack truncates the tracked records at the nacked offset and asks the
//! consumer to seek back there; an epoch number tells everyone which handed-out records are stale.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::consumer::{Command, ConsumerShared};

/// The acknowledgment state of one partition assigned to one consumer.
pub(crate) struct PartitionState {
    topic: Arc<str>,
    partition: i32,
    /// Bumped (under the tracker lock) by every rewind; records handed out under an older epoch
    /// are discarded.
    epoch: AtomicU64,
    tracker: Mutex<Tracker>,
    consumer: Arc<ConsumerShared>,
}

#[derive(Default)]
struct Tracker {
    pending: VecDeque<Entry>,
    /// One past the last offset of the acknowledged prefix.
    committable: Option<i64>,
    /// What was last sent to the broker.
    committed: Option<i64>,
    revoked: bool,
}

struct Entry {
    offset: i64,
    state: EntryState,
    /// The handler returned; a nack from now on rewinds at once instead of waiting for the worker.
    handler_done: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum EntryState {
    InFlight,
    Acked,
    Nacked(Duration),
}

/// What the worker must do once a handler returned.
#[derive(Debug, PartialEq)]
pub(crate) enum Resolution {
    /// Nothing: the record is acknowledged, or its ack token lives on elsewhere.
    Settled,
    /// The handler nacked the record; it will be delivered again.
    Rewound,
    /// The handler failed without acknowledging; retry or give up.
    Failed,
    /// The record is no longer tracked (revoked, or discarded by an earlier rewind).
    Gone,
}

impl PartitionState {
    pub(crate) fn new(topic: Arc<str>, partition: i32, consumer: Arc<ConsumerShared>) -> Self {
        PartitionState {
            topic,
            partition,
            epoch: AtomicU64::new(0),
            tracker: Mutex::new(Tracker::default()),
            consumer,
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    pub(crate) fn partition(&self) -> i32 {
        self.partition
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // A panic while holding this lock leaves the tracker consistent (every method finishes its
        // mutation before anything can panic), so a poisoned lock is still usable.
        self.tracker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.lock().revoked
    }

    /// Tracks a record handed to the worker; returns how many are in flight.
    pub(crate) fn dispatch(&self, offset: i64) -> usize {
        let mut tracker = self.lock();
        tracker.pending.push_back(Entry {
            offset,
            state: EntryState::InFlight,
            handler_done: false,
        });
        tracker.pending.len()
    }

    /// Offsets handed out and not acknowledged (abandoned if the consumer stops now).
    pub(crate) fn unacknowledged(&self) -> Vec<i64> {
        self.lock()
            .pending
            .iter()
            .filter(|entry| entry.state != EntryState::Acked)
            .map(|entry| entry.offset)
            .collect()
    }

    /// Records handed out and not yet part of the acknowledged prefix.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }

    /// Marks `offset` acknowledged and commits (or schedules a commit of) the new prefix.
    pub(crate) fn ack(self: &Arc<Self>, offset: i64) {
        let advanced = {
            let mut tracker = self.lock();
            if tracker.revoked {
                return;
            }
            let Some(entry) = tracker.find(offset) else {
                return;
            };
            if entry.state == EntryState::Acked {
                return;
            }
            entry.state = EntryState::Acked;
            tracker.advance()
        };
        self.consumer.acknowledged(self, advanced);
    }

    /// Asks for `offset` to be delivered again after `delay`.
    pub(crate) fn nack(self: &Arc<Self>, offset: i64, delay: Duration) {
        let mut tracker = self.lock();
        if tracker.revoked {
            return;
        }
        let Some(entry) = tracker.find(offset) else {
            return;
        };
        if entry.state != EntryState::InFlight {
            return;
        }
        if entry.handler_done {
            self.rewind_locked(&mut tracker, offset, delay);
        } else {
            entry.state = EntryState::Nacked(delay);
        }
    }

    /// Settles `offset` after its handler returned (`succeeded`), acknowledging it when the listener
    /// does not acknowledge by hand (`auto_ack`).
    pub(crate) fn handler_finished(
        self: &Arc<Self>,
        offset: i64,
        succeeded: bool,
        auto_ack: bool,
    ) -> Resolution {
        let mut tracker = self.lock();
        if tracker.revoked {
            return Resolution::Gone;
        }
        let Some(entry) = tracker.find(offset) else {
            return Resolution::Gone;
        };
        match entry.state {
            EntryState::Acked => Resolution::Settled,
            // A failed handler usually drops its Ack on the way out; the failure decides (retry
            // with back-off, bounded), not the implicit nack.
            _ if !succeeded => Resolution::Failed,
            EntryState::Nacked(delay) => {
                self.rewind_locked(&mut tracker, offset, delay);
                Resolution::Rewound
            }
            EntryState::InFlight if auto_ack => {
                drop(tracker);
                self.ack(offset);
                Resolution::Settled
            }
            EntryState::InFlight => {
                entry.handler_done = true;
                Resolution::Settled
            }
        }
    }

    /// Drops `offset` and everything after it and has the consumer seek back to it after `delay`.
    pub(crate) fn rewind(self: &Arc<Self>, offset: i64, delay: Duration) {
        let mut tracker = self.lock();
        if tracker.revoked || tracker.find(offset).is_none() {
            return;
        }
        self.rewind_locked(&mut tracker, offset, delay);
    }

    fn rewind_locked(self: &Arc<Self>, tracker: &mut Tracker, offset: i64, delay: Duration) {
        if let Some(index) = tracker.pending.iter().position(|e| e.offset == offset) {
            tracker.pending.truncate(index);
        }
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.consumer.send(Command::Rewind {
            partition: Arc::clone(self),
            offset,
            delay,
            epoch,
        });
    }

    /// The offset to commit, if it changed since the last commit (or always, with `force`).
    pub(crate) fn take_commit(&self, force: bool) -> Option<i64> {
        let mut tracker = self.lock();
        let committable = tracker.committable?;
        if !force && tracker.committed == Some(committable) {
            return None;
        }
        tracker.committed = Some(committable);
        Some(committable)
    }

    /// Forgets that `offset` was committed, so that the next commit sends it again.
    pub(crate) fn commit_failed(&self, offset: i64) {
        let mut tracker = self.lock();
        if tracker.committed == Some(offset) {
            tracker.committed = None;
        }
    }

    /// Stops tracking (the partition is being taken away) and returns the offset to commit.
    pub(crate) fn revoke(&self) -> Option<i64> {
        let mut tracker = self.lock();
        tracker.revoked = true;
        tracker.pending.clear();
        tracker.committed = tracker.committable;
        tracker.committable
    }
}

impl Tracker {
    fn find(&mut self, offset: i64) -> Option<&mut Entry> {
        let index = self
            .pending
            .binary_search_by_key(&offset, |entry| entry.offset)
            .ok()?;
        self.pending.get_mut(index)
    }

    /// Pops the acknowledged prefix; returns whether the committable offset moved.
    fn advance(&mut self) -> bool {
        let mut advanced = false;
        while let Some(front) = self.pending.front() {
            if front.state != EntryState::Acked {
                break;
            }
            self.committable = Some(front.offset + 1);
            self.pending.pop_front();
            advanced = true;
        }
        advanced
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc::UnboundedReceiver;

    use super::{PartitionState, Resolution};
    use crate::config::{AckMode, Format};
    use crate::container::consumer::{Command, ConsumerShared};
    use crate::container::ListenerSpec;
    use crate::extract::{RecordContext, Rejection};
    use crate::listener::Invocation;

    fn never_called(_: &mut RecordContext) -> Invocation {
        Invocation::Rejected(Rejection::new("test", "not called"))
    }

    fn partition(ack_mode: AckMode) -> (Arc<PartitionState>, UnboundedReceiver<Command>) {
        let spec = Arc::new(ListenerSpec {
            id: "test",
            topics: vec!["t".into()],
            group: "g".into(),
            concurrency: 1,
            ack_mode,
            invoke: never_called,
            formats: (Format::String, Format::Json),
            max_in_flight: 100,
            max_poll_records: 500,
            ack_count: 1,
            ack_time: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            correlation_header: "correlation_id".into(),
            record_span: crate::config::SpanLevel::Info,
            errors: crate::container::ErrorPolicy::new(&Default::default()),
            retry_topics: None,
            main_topics: vec!["t".into()],
            dead_letter: None,
        });
        let health = crate::management::health::Health::new(&Default::default());
        let (shared, commands) = ConsumerShared::new(
            spec,
            "test-0".into(),
            health.consumer("test", "test-0", "g"),
        );
        (
            Arc::new(PartitionState::new(Arc::from("t"), 0, shared)),
            commands,
        )
    }

    fn rewind(commands: &mut UnboundedReceiver<Command>) -> Option<(i64, Duration, u64)> {
        match commands.try_recv().ok()? {
            Command::Rewind {
                offset,
                delay,
                epoch,
                ..
            } => Some((offset, delay, epoch)),
            Command::Seek { .. } => None,
        }
    }

    #[test]
    fn commits_stop_at_the_first_unacknowledged_offset() {
        let (state, _commands) = partition(AckMode::Manual);
        for offset in 5..=8 {
            state.dispatch(offset);
        }
        state.ack(5);
        state.ack(7);
        assert_eq!(state.take_commit(false), Some(6));
        assert_eq!(state.take_commit(false), None, "nothing new to commit");
        state.ack(6);
        assert_eq!(state.take_commit(false), Some(8));
        assert_eq!(state.in_flight(), 1);
        state.ack(8);
        assert_eq!(state.take_commit(false), Some(9));
        assert_eq!(state.take_commit(true), Some(9), "force commits again");
    }

    #[test]
    fn a_nack_inside_the_handler_rewinds_when_the_handler_returns() {
        let (state, mut commands) = partition(AckMode::Manual);
        for offset in 0..3 {
            state.dispatch(offset);
        }
        state.nack(0, Duration::from_millis(250));
        assert!(rewind(&mut commands).is_none(), "waits for the handler");
        assert_eq!(state.handler_finished(0, true, false), Resolution::Rewound);
        assert_eq!(
            rewind(&mut commands),
            Some((0, Duration::from_millis(250), 1))
        );
        assert_eq!(state.epoch(), 1);
        assert_eq!(
            state.in_flight(),
            0,
            "records after the nacked one are dropped too"
        );
        state.ack(1);
        assert_eq!(
            state.take_commit(false),
            None,
            "acks of dropped records are ignored"
        );
    }

    #[test]
    fn a_late_nack_rewinds_at_once_and_keeps_the_acknowledged_prefix() {
        let (state, mut commands) = partition(AckMode::Manual);
        for offset in 0..4 {
            state.dispatch(offset);
            assert_eq!(
                state.handler_finished(offset, true, false),
                Resolution::Settled
            );
        }
        state.ack(0);
        state.nack(2, Duration::ZERO);
        assert_eq!(rewind(&mut commands), Some((2, Duration::ZERO, 1)));
        assert_eq!(state.take_commit(false), Some(1));
        state.ack(1);
        assert_eq!(
            state.take_commit(false),
            Some(2),
            "offset 1 is still tracked"
        );
    }

    #[test]
    fn a_failed_handler_that_dropped_its_ack_is_a_failure_not_a_nack() {
        let (state, mut commands) = partition(AckMode::Manual);
        state.dispatch(0);
        state.nack(0, Duration::ZERO);
        assert_eq!(state.handler_finished(0, false, false), Resolution::Failed);
        assert!(rewind(&mut commands).is_none(), "the worker decides");
        state.ack(0);
        assert_eq!(
            state.take_commit(false),
            Some(1),
            "giving up settles the record"
        );
    }

    #[test]
    fn failures_and_auto_acks_are_settled_by_the_worker() {
        let (state, _commands) = partition(AckMode::Record);
        state.dispatch(0);
        state.dispatch(1);
        assert_eq!(state.handler_finished(0, false, true), Resolution::Failed);
        assert_eq!(state.take_commit(false), None);
        assert_eq!(state.handler_finished(1, true, true), Resolution::Settled);
        assert_eq!(state.take_commit(false), None, "1 waits for 0");
        state.ack(0);
        assert_eq!(state.take_commit(false), Some(2));
    }

    #[test]
    fn a_revoked_partition_ignores_late_acks() {
        let (state, _commands) = partition(AckMode::Manual);
        state.dispatch(0);
        state.dispatch(1);
        state.ack(0);
        assert_eq!(state.revoke(), Some(1));
        state.ack(1);
        assert!(state.is_revoked());
        assert_eq!(state.handler_finished(1, true, false), Resolution::Gone);
        assert_eq!(state.take_commit(false), None);
    }
}
