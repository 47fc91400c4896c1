//! A partition task whose records may be handled at the same time (`ordering` `key` or
//! `none`, the ordering modes of Confluent's Parallel Consumer): up to `max-parallel` handlers
//! of the consumer run at once (its partitions share the slots), records of one key (with
//! `key`) one after another in offset order.
//!
//! Records wait in lanes, one per key (one per record with `none`), still in librdkafka's
//! buffer. The head of a lane is handled when the lane is free and a handler slot is; a lane
//! stays busy while its head is retried or recovered, so a failing record holds back its own key
//! only. Retries wait in place (no seek: the other keys' records stay where they are). Commits
//! stay gap-aware: the tracker acknowledges in any order and commits the acknowledged prefix;
//! `max-in-flight` bounds what is read ahead.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::stream_consumer::MessageStream;
use rdkafka::consumer::ConsumerContext;
use rdkafka::message::{BorrowedMessage, Message};
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::PartitionTask;
use crate::config::Ordering;
use crate::container::delivery::{self, Attempt, Outcome};
use crate::container::error_handler;
use crate::container::tracker::Delivery;
use crate::extract::RecordContext;
use crate::handling::{AckEvent, AckKind};
use crate::listener::{HandlerError, Invocation};
use crate::record::{ConsumerRecord, Coordinates, RecordView};

/// What a lane's head is waiting for, besides a handler slot.
enum Head {
    /// Its next delivery; `attempts` failed so far.
    Deliver { attempts: u32 },
    /// The recoverer, which failed `failures` times in a row.
    Recover {
        error: HandlerError,
        attempts: u32,
        failures: u32,
    },
    /// Its handler returned without acknowledging it (manual ack modes, the token kept): its
    /// key waits for the acknowledgment.
    AwaitingAck { attempts: u32 },
}

/// The records of one key, in offset order; the first is the one being handled.
struct Lane<'q> {
    records: VecDeque<(BorrowedMessage<'q>, Delivery)>,
    head: Head,
    /// A handler of its head runs, or its head waits for a due time.
    busy: bool,
    /// In the ready queue.
    ready: bool,
    /// A nack of its head that came from another task while the head's handler still ran.
    nacked: Option<Duration>,
}

/// What finished: a handler, or a wait.
enum Done {
    Handled {
        lane: u64,
        outcome: Outcome,
        settled: Option<AckEvent>,
        attempt: Attempt,
    },
    Due {
        lane: u64,
    },
    /// The lane's head is to go to the recoverer now.
    Recover {
        lane: u64,
    },
}

type Running = FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send>>>;

/// The lanes of a partition task and what runs for them.
struct Lanes<'q> {
    lanes: HashMap<u64, Lane<'q>>,
    /// Lanes whose head waits for a handler slot, oldest first.
    ready: VecDeque<u64>,
    running: Running,
    /// Handlers running (waits are not).
    handlers: usize,
    /// A handler slot taken while waiting for one, for the next ready lane.
    spare: Option<OwnedSemaphorePermit>,
}

impl<C: ConsumerContext + 'static> PartitionTask<C> {
    /// Runs the partition in parallel until `stop` turns true; then lets the running handlers
    /// finish and settles them (waits for due times are abandoned: their records stay
    /// uncommitted).
    pub(super) async fn run_parallel<'q>(
        &mut self,
        invoke: fn(&mut RecordContext<'_>) -> Invocation,
        stream: &mut MessageStream<'q, C>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let spec = Arc::clone(&self.setup.spec);
        let mut lanes = Lanes {
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            running: FuturesUnordered::new(),
            handlers: 0,
            spare: None,
        };
        let slots = Arc::clone(&self.setup.parallel);
        // The stop sender gone (the consumer torn down) stops the partition too, running
        // handlers finishing first.
        let mut closed = false;
        loop {
            let stopping = closed || *stop.borrow();
            if stopping && lanes.handlers == 0 {
                break;
            }
            let reading = !stopping
                && !self.paused_by_application()
                && self.tracker.in_flight() < spec.max_in_flight;
            // Ready lanes left after starting what could start: the consumer's slots are taken.
            let waiting = !stopping && !lanes.ready.is_empty() && lanes.spare.is_none();
            tokio::select! {
                biased;
                changed = stop.changed(), if !stopping => closed = changed.is_err(),
                Ok(()) = self.setup.paused.changed(), if !stopping => self.apply_pause(),
                Some(to) = self.setup.seeks.recv(), if !stopping => self.refuse_seek(to),
                Some(event) = self.acks.recv() => self.on_parallel_ack(event, &mut lanes),
                Ok(permit) = Arc::clone(&slots).acquire_owned(), if waiting => {
                    lanes.spare = Some(permit);
                }
                Some(done) = lanes.running.next(), if !lanes.running.is_empty() => {
                    self.on_done(done, &mut lanes).await;
                }
                Some(message) = stream.next(), if reading => {
                    self.enqueue(message, &mut lanes);
                    // The records that are ready too, up to `max-poll-records`.
                    let mut read = 1;
                    while read < spec.max_poll_records && self.tracker.in_flight() < spec.max_in_flight {
                        match stream.next().now_or_never() {
                            Some(Some(message)) => self.enqueue(message, &mut lanes),
                            _ => break,
                        }
                        read += 1;
                    }
                }
            }
            while !closed && !*stop.borrow() {
                let finished = self.start_ready(invoke, &mut lanes);
                if finished.is_empty() {
                    break;
                }
                for done in finished {
                    self.on_done(done, &mut lanes).await;
                }
            }
            self.offer(true);
        }
    }

    /// Puts a record read from the queue in its lane.
    fn enqueue<'q>(
        &mut self,
        message: rdkafka::error::KafkaResult<BorrowedMessage<'q>>,
        lanes: &mut Lanes<'q>,
    ) {
        let Some((message, delivery)) = self.accept(message) else {
            return;
        };
        let lane = lane_of(self.setup.spec.ordering, &message);
        let entry = lanes.lanes.entry(lane).or_insert_with(|| Lane {
            records: VecDeque::new(),
            head: Head::Deliver { attempts: 0 },
            busy: false,
            ready: false,
            nacked: None,
        });
        entry.records.push_back((message, delivery));
        lanes.schedule(lane);
    }

    /// Starts the heads of ready lanes while handler slots are free; gives what finished at
    /// once (a handler that did not wait for anything), which the caller settles.
    fn start_ready(
        &mut self,
        invoke: fn(&mut RecordContext<'_>) -> Invocation,
        lanes: &mut Lanes<'_>,
    ) -> Vec<Done> {
        let spec = Arc::clone(&self.setup.spec);
        let mut finished = Vec::new();
        while !lanes.ready.is_empty() {
            let permit = match lanes.spare.take() {
                Some(permit) => permit,
                None => match Arc::clone(&self.setup.parallel).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let Some(id) = lanes.ready.pop_front() else {
                break;
            };
            let Some(lane) = lanes.lanes.get_mut(&id) else {
                continue;
            };
            lane.ready = false;
            let Some((message, delivery)) = lane.records.front() else {
                continue;
            };
            let delivery = *delivery;
            let topic = Arc::clone(&self.setup.topic);
            let record = RecordView::of_message(message, &topic);
            lane.busy = true;
            match std::mem::replace(&mut lane.head, Head::Deliver { attempts: 0 }) {
                Head::Recover {
                    error,
                    attempts,
                    failures,
                } => {
                    lane.head = Head::Recover {
                        error,
                        attempts,
                        failures,
                    };
                    finished.push(Done::Recover { lane: id });
                }
                Head::Deliver { attempts } | Head::AwaitingAck { attempts } => {
                    lane.head = Head::Deliver { attempts };
                    let started = Instant::now();
                    self.setup.progress.handling(delivery.offset, started);
                    let attempt = self.attempt(attempts + 1, started, delivery);
                    let ack = spec.ack_mode.is_manual().then(|| self.token(delivery));
                    let app = &self.setup.app;
                    let prepared = delivery::prepare(&spec, invoke, app, (record, ack), attempt);
                    lanes.handlers += 1;
                    let mut running: Pin<Box<dyn Future<Output = Done> + Send>> =
                        Box::pin(async move {
                            // Key lanes leave no replies on their way: their handlers wait.
                            let (outcome, settled, _) = delivery::execute(prepared).await;
                            drop(permit);
                            Done::Handled {
                                lane: id,
                                outcome,
                                settled,
                                attempt,
                            }
                        });
                    // Most handlers finish without waiting: settled at once, they never enter
                    // the set of running futures. One that waits is polled again there, with
                    // its waker.
                    match running.as_mut().now_or_never() {
                        Some(done) => finished.push(done),
                        None => lanes.running.push(running),
                    }
                }
            }
        }
        finished
    }

    /// A handler finished, or a wait is over.
    async fn on_done(&mut self, done: Done, lanes: &mut Lanes<'_>) {
        let (id, outcome, settled, attempt) = match done {
            Done::Recover { lane } => return self.recover_lane_head(lane, lanes).await,
            Done::Due { lane } => {
                if let Some(waiting) = lanes.lanes.get_mut(&lane) {
                    waiting.busy = false;
                }
                lanes.schedule(lane);
                return;
            }
            Done::Handled {
                lane,
                outcome,
                settled,
                attempt,
            } => (lane, outcome, settled, attempt),
        };
        lanes.handlers -= 1;
        let ended = Instant::now();
        delivery::account(&self.metrics, &outcome, (1, attempt), ended);
        let Some(delivery) = lanes.head(id) else {
            return;
        };
        let record = (
            self.setup.topic.as_ref(),
            self.setup.partition,
            delivery.offset,
        );
        delivery::intercepted(
            &self.setup.app,
            self.setup.spec.id,
            record,
            (attempt, ended),
            &outcome,
        );
        let spec = Arc::clone(&self.setup.spec);
        let manual = spec.ack_mode.is_manual();
        let pending = self.tracker.is_pending(delivery);
        let error = match outcome {
            Outcome::Handled => {
                let nacked = lanes.take_nack(id);
                match settled.map(|event| event.kind) {
                    Some(AckKind::Nack(delay)) if pending => {
                        self.deliver_again(id, attempt.number, delay, lanes);
                    }
                    Some(AckKind::Dropped) if pending => {
                        self.ack_dropped(delivery);
                        self.deliver_again(id, attempt.number, Duration::ZERO, lanes);
                    }
                    Some(_) => {
                        self.acknowledge(delivery);
                        lanes.advance(id);
                    }
                    None if !manual => {
                        self.acknowledge(delivery);
                        lanes.advance(id);
                    }
                    None if !pending => lanes.advance(id),
                    None => match nacked {
                        Some(delay) => self.deliver_again(id, attempt.number, delay, lanes),
                        None => {
                            let attempts = attempt.number;
                            lanes.set_head(id, Head::AwaitingAck { attempts });
                        }
                    },
                }
                self.progressed(ended);
                return;
            }
            Outcome::Filtered | Outcome::Duplicate => {
                self.acknowledge(delivery);
                lanes.advance(id);
                self.progressed(ended);
                return;
            }
            Outcome::Rejected(error) => {
                if self.renew(id, lanes) {
                    lanes.recover_next(id, error, attempt.number);
                    lanes.schedule_now(id);
                }
                return;
            }
            Outcome::Failed(error) => error,
        };
        // The failure decides, not a nack from elsewhere.
        lanes.take_nack(id);
        // A failed handler usually drops its Ack on the way out: the failure decides.
        if !pending {
            tracing::error!(
                listener = spec.id, offset = delivery.offset, %error,
                "handler failed after acknowledging the record; it stays acknowledged"
            );
            lanes.advance(id);
            return;
        }
        if error.is_retryable() && attempt.number < spec.errors.max_attempts {
            let delay = spec.errors.delay(attempt.number);
            tracing::warn!(
                listener = spec.id, topic = %self.setup.topic, partition = self.setup.partition,
                offset = delivery.offset, attempt = attempt.number, ?delay, %error,
                "handler failed; the record will be delivered again (its key waits)"
            );
            self.deliver_again(id, attempt.number, delay, lanes);
        } else if self.renew(id, lanes) {
            lanes.recover_next(id, error, attempt.number);
            lanes.schedule_now(id);
        }
        self.progressed(ended);
    }

    /// Lane `id`'s head, delivered `attempts` times, is delivered again after `delay`, its key
    /// waiting.
    fn deliver_again(&mut self, id: u64, attempts: u32, delay: Duration, lanes: &mut Lanes<'_>) {
        if self.renew(id, lanes) {
            lanes.set_head(id, Head::Deliver { attempts });
            lanes.wait(id, delay);
        }
    }

    /// Starts a new delivery epoch for lane `id`'s head, which failed or was nacked: tokens of
    /// its earlier deliveries settle nothing any more. `false` (and the lane moves on) when the
    /// record was acknowledged meanwhile.
    fn renew(&mut self, id: u64, lanes: &mut Lanes<'_>) -> bool {
        let renewed = lanes
            .lanes
            .get_mut(&id)
            .and_then(|lane| lane.records.front_mut())
            .and_then(|(_, delivery)| {
                let again = self.tracker.redeliver(delivery.offset)?;
                *delivery = again;
                Some(())
            });
        if renewed.is_none() {
            lanes.advance(id);
        }
        renewed.is_some()
    }

    /// Hands lane `id`'s head, marked for recovery, to the recoverer.
    async fn recover_lane_head(&mut self, id: u64, lanes: &mut Lanes<'_>) {
        let Some(lane) = lanes.lanes.get_mut(&id) else {
            return;
        };
        let Some((message, delivery)) = lane.records.front() else {
            return;
        };
        let Head::Recover {
            error,
            attempts,
            failures,
        } = std::mem::replace(&mut lane.head, Head::Deliver { attempts: 0 })
        else {
            return;
        };
        let topic = Arc::clone(&self.setup.topic);
        let owned = RecordView::of_message(message, &topic).to_record();
        let delivery = *delivery;
        self.recover_head(id, (&owned, delivery), (error, attempts, failures), lanes)
            .await;
    }

    /// Hands a lane's head to the recoverer: acknowledged once recovered, else tried again after
    /// a growing back-off, its key waiting.
    async fn recover_head(
        &mut self,
        id: u64,
        (record, delivery): (&ConsumerRecord, Delivery),
        (error, attempts, failures): (HandlerError, u32, u32),
        lanes: &mut Lanes<'_>,
    ) {
        let spec = Arc::clone(&self.setup.spec);
        match error_handler::recover(&spec, record, &error, attempts, &self.metrics).await {
            Ok(()) => {
                self.setup.progress.recovery_failing(false);
                self.acknowledge(delivery);
                lanes.advance(id);
            }
            Err(failed) => {
                let failures = failures.saturating_add(1);
                let coordinates = Coordinates(&record.topic, record.partition, record.offset);
                let delay = self.publication_failed(coordinates, &failed, failures);
                lanes.set_head(
                    id,
                    Head::Recover {
                        error,
                        attempts,
                        failures,
                    },
                );
                lanes.wait(id, delay);
            }
        }
    }

    /// An acknowledgment from outside its handler's own task: an ack settles its record (and
    /// frees its key if the key waited for it); a nack of a record whose key waits for it
    /// delivers it again after its delay.
    fn on_parallel_ack(&mut self, event: AckEvent, lanes: &mut Lanes<'_>) {
        let delivery = Delivery {
            offset: event.offset,
            epoch: event.epoch,
        };
        let awaiting = lanes.awaiting(delivery);
        match event.kind {
            AckKind::Ack => {
                self.acknowledge(delivery);
                if let Some((id, _)) = awaiting {
                    lanes.advance(id);
                }
            }
            AckKind::AckFrom(first) => {
                let count = self.tracker.ack_range(first, event.offset, event.epoch);
                if count > 0 {
                    self.acknowledged(count);
                }
            }
            AckKind::Nack(_) | AckKind::Dropped if self.tracker.is_pending(delivery) => {
                let delay = match event.kind {
                    AckKind::Nack(delay) => delay,
                    _ => {
                        self.ack_dropped(delivery);
                        Duration::ZERO
                    }
                };
                if let Some((id, attempts)) = awaiting {
                    self.deliver_again(id, attempts, delay, lanes);
                } else if let Some(lane) = lanes.running_head(delivery) {
                    // Its handler still runs: applied when it returns.
                    lane.nacked = Some(delay);
                }
            }
            AckKind::Nack(_) | AckKind::Dropped => {}
        }
    }

    fn progressed(&self, at: Instant) {
        let busy = self.tracker.in_flight() > 0;
        self.setup.progress.progressed(busy, at);
    }
}

impl<'q> Lanes<'q> {
    /// Queues `id` for a handler slot if its head may start.
    fn schedule(&mut self, id: u64) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            if !lane.busy && !lane.ready && !lane.records.is_empty() {
                lane.ready = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Frees `id` and queues it at once (its head goes to the recoverer next).
    fn schedule_now(&mut self, id: u64) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.busy = false;
        }
        self.schedule(id);
    }

    /// The delivery heading lane `id`.
    fn head(&self, id: u64) -> Option<Delivery> {
        self.lanes
            .get(&id)
            .and_then(|lane| lane.records.front())
            .map(|(_, delivery)| *delivery)
    }

    fn set_head(&mut self, id: u64, head: Head) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.head = head;
        }
    }

    fn recover_next(&mut self, id: u64, error: HandlerError, attempts: u32) {
        self.set_head(
            id,
            Head::Recover {
                error,
                attempts,
                failures: 0,
            },
        );
    }

    /// The lane headed by `delivery` while the head's handler runs.
    fn running_head(&mut self, delivery: Delivery) -> Option<&mut Lane<'q>> {
        self.lanes.values_mut().find(|lane| {
            let heads = lane.records.front().map(|(_, d)| *d) == Some(delivery);
            heads && lane.busy && matches!(lane.head, Head::Deliver { .. })
        })
    }

    fn take_nack(&mut self, id: u64) -> Option<Duration> {
        self.lanes.get_mut(&id).and_then(|lane| lane.nacked.take())
    }

    /// The lane headed by `delivery` when it waits for its acknowledgment, and the record's
    /// failed deliveries so far.
    fn awaiting(&self, delivery: Delivery) -> Option<(u64, u32)> {
        self.lanes.iter().find_map(|(id, lane)| {
            let heads = lane.records.front().map(|(_, d)| *d) == Some(delivery);
            match lane.head {
                Head::AwaitingAck { attempts } if heads => Some((*id, attempts)),
                _ => None,
            }
        })
    }

    /// Lane `id`'s head is settled: the next record of its key may start.
    fn advance(&mut self, id: u64) {
        let Some(lane) = self.lanes.get_mut(&id) else {
            return;
        };
        lane.records.pop_front();
        lane.head = Head::Deliver { attempts: 0 };
        lane.busy = false;
        if lane.records.is_empty() {
            self.lanes.remove(&id);
        } else {
            self.schedule(id);
        }
    }

    /// Lane `id` waits `delay` (busy meanwhile), then is queued again.
    fn wait(&mut self, id: u64, delay: Duration) {
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.busy = true;
        }
        self.running.push(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Done::Due { lane: id }
        }));
    }
}

/// The lane of a record: its key's (a null key is a key of its own), or its own with
/// `ordering = "none"`. Keys are told apart by a hash: two keys that collide share a lane, which
/// costs parallelism, never order.
fn lane_of(ordering: Ordering, message: &BorrowedMessage<'_>) -> u64 {
    if ordering == Ordering::None {
        return u64::try_from(message.offset()).unwrap_or_default();
    }
    let mut hasher = DefaultHasher::new();
    message.key().hash(&mut hasher);
    hasher.finish()
}
