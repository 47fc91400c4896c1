//! The offset tracker of one partition: which records were handed out, which are acknowledged,
//! and what may be committed.
//!
//! Plain data with one owner (the partition's task): no locks, no reference to the consumer.
//! Records are tracked in offset order and acknowledged in any order; the committable offset is
//! one past the end of the acknowledged prefix, so a commit never passes an unacknowledged
//! record. A rewind (a nack, a failed delivery) forgets the rewound record and everything after
//! it and starts a new delivery epoch: an acknowledgment names its record's offset and the epoch
//! it was delivered in, so a token from an earlier delivery never settles a later one.

use std::collections::VecDeque;

/// One delivery of a record: its offset and the epoch it was delivered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) offset: i64,
    pub(crate) epoch: u32,
}

#[derive(Debug)]
struct Entry {
    delivery: Delivery,
    acked: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Tracked records not yet part of the acknowledged prefix, in offset order.
    entries: VecDeque<Entry>,
    /// The epoch of new deliveries; bumped by every rewind.
    epoch: u32,
    /// The lowest offset a newly read record may have: records before it were read already.
    position: Option<i64>,
    /// One past the last offset of the acknowledged prefix.
    committable: Option<i64>,
}

impl OffsetTracker {
    /// Tracks a record read at `offset`; `None` for a record at or before one read already
    /// (a stale fetch, which the tracker refuses so that its entries stay in order).
    pub(crate) fn track(&mut self, offset: i64) -> Option<Delivery> {
        if self.position.is_some_and(|position| offset < position) {
            return None;
        }
        self.position = Some(offset + 1);
        let delivery = Delivery {
            offset,
            epoch: self.epoch,
        };
        self.entries.push_back(Entry {
            delivery,
            acked: false,
        });
        Some(delivery)
    }

    /// Whether `delivery` is tracked and not yet acknowledged.
    pub(crate) fn is_pending(&self, delivery: Delivery) -> bool {
        self.find(delivery)
            .is_some_and(|index| !self.entries[index].acked)
    }

    /// Acknowledges `delivery`; `false` when it is not pending (stale, repeated or rewound).
    pub(crate) fn ack(&mut self, delivery: Delivery) -> bool {
        let Some(index) = self.find(delivery) else {
            return false;
        };
        let entry = &mut self.entries[index];
        if entry.acked {
            return false;
        }
        entry.acked = true;
        self.advance();
        true
    }

    /// Acknowledges every pending record of `epoch` from `first` to `last` (inclusive: a
    /// batch); gives how many it acknowledged.
    pub(crate) fn ack_range(&mut self, first: i64, last: i64, epoch: u32) -> u32 {
        let start = self
            .entries
            .partition_point(|entry| entry.delivery.offset < first);
        let mut acked = 0;
        for entry in self.entries.range_mut(start..) {
            if entry.delivery.offset > last {
                break;
            }
            if entry.delivery.epoch == epoch && !entry.acked {
                entry.acked = true;
                acked += 1;
            }
        }
        self.advance();
        acked
    }

    /// Starts a new delivery of the pending record at `offset` where it is (a retry in place,
    /// without a rewind): tokens of its earlier deliveries no longer settle it. `None` when it is
    /// not pending any more.
    pub(crate) fn redeliver(&mut self, offset: i64) -> Option<Delivery> {
        let index = self
            .entries
            .binary_search_by_key(&offset, |entry| entry.delivery.offset)
            .ok()?;
        if self.entries[index].acked {
            return None;
        }
        self.epoch = self.epoch.wrapping_add(1);
        let entry = &mut self.entries[index];
        entry.delivery.epoch = self.epoch;
        Some(entry.delivery)
    }

    /// The offset of the first tracked record at or after `from` not yet acknowledged.
    pub(crate) fn first_pending_from(&self, from: i64) -> Option<i64> {
        self.entries
            .iter()
            .find(|entry| entry.delivery.offset >= from && !entry.acked)
            .map(|entry| entry.delivery.offset)
    }

    /// Moves the acknowledged prefix out of the entries.
    fn advance(&mut self) {
        while self.entries.front().is_some_and(|entry| entry.acked) {
            if let Some(entry) = self.entries.pop_front() {
                self.committable = Some(entry.delivery.offset + 1);
            }
        }
    }

    /// The lowest offset a newly read record may have, once one was read (or a seek set it).
    pub(crate) fn position(&self) -> Option<i64> {
        self.position
    }

    /// Reads on from `offset`, past the position: the records in between are never handed out,
    /// and those tracked stay until acknowledged (so the committable offset passes the gap only
    /// once a record from `offset` on is acknowledged).
    pub(crate) fn skip_to(&mut self, offset: i64) {
        self.position = Some(offset);
    }

    /// Forgets `offset` and every record after it (they will be read again from `offset`) and
    /// starts a new delivery epoch.
    pub(crate) fn rewind(&mut self, offset: i64) {
        let keep = self
            .entries
            .partition_point(|entry| entry.delivery.offset < offset);
        self.entries.truncate(keep);
        self.position = Some(offset);
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The offset to commit: one past the acknowledged prefix.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.committable
    }

    /// Records handed out and not yet part of the acknowledged prefix.
    pub(crate) fn in_flight(&self) -> usize {
        self.entries.len()
    }

    fn find(&self, delivery: Delivery) -> Option<usize> {
        let index = self
            .entries
            .binary_search_by_key(&delivery.offset, |entry| entry.delivery.offset)
            .ok()?;
        (self.entries[index].delivery.epoch == delivery.epoch).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seek_forward_skips_the_gap_only_once_a_record_after_it_is_acknowledged() {
        let (mut tracker, deliveries) = tracked(0..3);
        tracker.skip_to(10);
        assert_eq!(
            tracker.track(5),
            None,
            "a record from before the seek is stale"
        );
        let after = tracker.track(10).expect("the seek's position");
        assert!(tracker.ack(deliveries[0]) && tracker.ack(deliveries[1]));
        assert_eq!(
            tracker.committable(),
            Some(2),
            "record 2 is still in flight"
        );
        assert!(tracker.ack(deliveries[2]));
        assert_eq!(
            tracker.committable(),
            Some(3),
            "nothing after the gap acknowledged yet"
        );
        assert!(tracker.ack(after));
        assert_eq!(tracker.committable(), Some(11));
    }

    #[test]
    fn a_retry_in_place_is_a_new_delivery() {
        let (mut tracker, deliveries) = tracked(0..3);
        let again = tracker.redeliver(1).expect("pending");
        assert_ne!(again.epoch, deliveries[1].epoch);
        assert!(
            !tracker.ack(deliveries[1]),
            "the earlier delivery's token is stale"
        );
        assert!(tracker.ack(again));
        assert!(tracker.ack(deliveries[2]), "the others keep theirs");
        assert_eq!(
            tracker.redeliver(1),
            None,
            "acknowledged: nothing to deliver again"
        );
        assert!(tracker.ack(deliveries[0]));
        assert_eq!(tracker.committable(), Some(3));
    }

    #[test]
    fn a_range_acknowledges_only_its_epoch_and_bounds() {
        let (mut tracker, _) = tracked(0..6);
        tracker.rewind(4);
        let again = [tracker.track(4), tracker.track(5)];
        assert_eq!(
            tracker.ack_range(1, 5, 0),
            3,
            "1..=3 of epoch 0; 4 and 5 were rewound"
        );
        assert_eq!(tracker.committable(), None, "0 is not acknowledged");
        assert_eq!(tracker.first_pending_from(0), Some(0));
        assert_eq!(
            tracker.first_pending_from(1),
            Some(4),
            "1..=3 are acknowledged"
        );
        assert!(tracker.ack(Delivery {
            offset: 0,
            epoch: 0
        }));
        assert_eq!(tracker.committable(), Some(4));
        let epoch = again[0].expect("tracked").epoch;
        assert_eq!(tracker.ack_range(4, 4, epoch), 1);
        assert_eq!(
            tracker.ack_range(4, 5, epoch),
            1,
            "4 is not acknowledged twice"
        );
        assert_eq!(tracker.committable(), Some(6));
        assert_eq!(tracker.first_pending_from(0), None);
    }

    fn tracked(offsets: impl IntoIterator<Item = i64>) -> (OffsetTracker, Vec<Delivery>) {
        let mut tracker = OffsetTracker::default();
        let deliveries = offsets
            .into_iter()
            .map(|offset| tracker.track(offset).expect("in order"))
            .collect();
        (tracker, deliveries)
    }

    #[test]
    fn commits_stop_at_the_first_unacknowledged_offset() {
        let (mut tracker, d) = tracked(5..=8);
        assert!(tracker.ack(d[0]));
        assert!(tracker.ack(d[2]));
        assert_eq!(tracker.committable(), Some(6));
        assert!(tracker.ack(d[1]));
        assert_eq!(tracker.committable(), Some(8));
        assert_eq!(tracker.in_flight(), 1);
        assert!(!tracker.ack(d[1]), "a repeated ack is ignored");
        assert!(tracker.ack(d[3]));
        assert_eq!(tracker.committable(), Some(9));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn a_rewind_forgets_the_rest_and_ignores_acks_of_the_earlier_delivery() {
        let (mut tracker, d) = tracked(0..4);
        tracker.rewind(2);
        assert_eq!(tracker.in_flight(), 2, "0 and 1 stay tracked");
        assert!(!tracker.ack(d[2]), "2 was rewound");
        assert!(!tracker.ack(d[3]), "3 was rewound");
        let again = tracker.track(2).expect("read again after the rewind");
        assert_ne!(again, d[2], "a new delivery epoch");
        assert!(
            !tracker.ack(d[2]),
            "the earlier delivery's token does not settle the redelivery"
        );
        assert!(tracker.is_pending(again));
        assert!(
            tracker.ack(d[0]) && tracker.ack(d[1]),
            "records before the rewind keep their own epoch"
        );
        assert!(tracker.ack(again));
        assert_eq!(tracker.committable(), Some(3));
    }

    #[test]
    fn stale_records_are_refused_so_that_entries_stay_in_order() {
        let (mut tracker, _) = tracked([10, 11, 14]);
        assert_eq!(tracker.track(12), None, "before the read position");
        assert!(tracker.track(15).is_some(), "gaps (compaction) are fine");
        tracker.rewind(11);
        assert_eq!(tracker.track(10), None);
        assert!(tracker.track(11).is_some());
        assert_eq!(tracker.in_flight(), 2, "10 and 11");
    }
}
