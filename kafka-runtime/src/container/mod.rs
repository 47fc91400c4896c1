//! Listener containers: `concurrency` consumers per listener, each dispatching its partitions to
//! per-partition workers and committing what was acknowledged.
//!
//! Spring's semantics: each consumer is its own librdkafka consumer in the listener's group, so
//! `concurrency = 3` on 6 partitions gives 3 group members with 2 partitions each. Within a
//! consumer, each partition has its own worker task: records of one partition reach the handler
//! in offset order, and a slow partition does not stall the others.

mod assignment;
mod committer;
mod consumer;
mod delivery;
mod error_handler;
mod partition;
mod retry_topics;
mod tracker;

pub(crate) use assignment::ExplicitPartitions;
pub(crate) use delivery::RECORD_SPAN_TARGET;
#[cfg(feature = "test-util")]
pub(crate) use delivery::{deliver_once, Outcome};
pub(crate) use error_handler::{DeadLetterPublisher, ErrorPolicy};
pub(crate) use retry_topics::RetryTopics;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::sync::watch;

use crate::config::{client, AckMode, Format, KafkaSettings, Ordering};
use crate::context::AppContext;
use crate::control::{Paused, SeekTo};
use crate::error::Error;
use crate::listener::Invoker;
use crate::management::health::{ConsumerHealth, Health};

/// How long the final commit and the close may take after the shutdown timeout.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

/// A listener with its configuration resolved: what every consumer of its container needs.
pub(crate) struct ListenerSpec {
    pub(crate) id: &'static str,
    /// What its consumers subscribe to: topics, or one `^(...)$` pattern (`topic_pattern`).
    pub(crate) topics: Vec<String>,
    /// Partitions it names (`partitions`): assigned to its consumers, not subscribed.
    pub(crate) explicit: Option<ExplicitPartitions>,
    pub(crate) group: String,
    /// Where the handler's replies go when the request names no topic (`send_to`).
    pub(crate) send_to: Option<Arc<str>>,
    /// Records it discards: acknowledged without calling the handler.
    pub(crate) filter: Option<crate::intercept::RecordFilter>,
    /// Where a record's id is, when the listener skips records processed before.
    pub(crate) dedupe: Option<crate::dedupe::Dedupe>,
    pub(crate) concurrency: u32,
    pub(crate) ack_mode: AckMode,
    pub(crate) invoke: Invoker,
    /// (key, value) formats.
    pub(crate) formats: (Format, Format),
    pub(crate) max_in_flight: usize,
    /// Which records of a partition may be handled at the same time.
    pub(crate) ordering: Ordering,
    /// With `ordering` `key` or `none`: handlers of one consumer at the same time.
    pub(crate) max_parallel: usize,
    pub(crate) max_poll_records: u32,
    pub(crate) ack_count: u32,
    pub(crate) ack_time: Duration,
    pub(crate) poll_timeout: Duration,
    /// The header whose value follows a record into what its handler produces.
    pub(crate) correlation_header: &'static str,
    /// The level of each record's span.
    pub(crate) record_span: crate::config::SpanLevel,
    /// How long in-flight handlers may run on at shutdown.
    pub(crate) shutdown_timeout: Duration,
    /// How long the handlers of revoked partitions may run on before the partitions are given up.
    pub(crate) revoke_timeout: Duration,
    /// How long a consumer handles nothing before the application hears it is idle.
    pub(crate) idle_event_interval: Option<Duration>,
    pub(crate) errors: ErrorPolicy,
    /// Non-blocking retries through retry topics, when enabled (then `errors` is not used).
    pub(crate) retry_topics: Option<RetryTopics>,
    /// The listener's own topics; `topics` adds their retry topics.
    pub(crate) main_topics: Vec<String>,
    /// `producer.transaction-id-prefix`: handling runs in transactions (see
    /// `partition/transactional.rs`).
    pub(crate) transactional: Option<String>,
    /// Present when records are republished: to dead-letter or retry topics.
    pub(crate) dead_letter: Option<DeadLetterPublisher>,
}

impl ListenerSpec {
    /// Whether the container, not the handler, waits for the handler's replies: the record is
    /// acknowledged when they are delivered, and its partition reads on meanwhile. Not with manual
    /// acks (the handler's own acknowledgment comes first), in transactions (the commit flushes
    /// them), nor in key lanes (handlers there run side by side already), nor when it
    /// deduplicates (a record is remembered as processed once its replies are sent).
    pub(crate) fn defers_replies(&self) -> bool {
        !self.ack_mode.is_manual()
            && self.dedupe.is_none()
            && self.transactional.is_none()
            && self.ordering == Ordering::Partition
            && matches!(self.invoke, Invoker::Record(_))
    }

    /// Whether a delivery that failed with `error`, the `attempt`th, is retried in place (after
    /// the back-off) rather than handed to the recoverer.
    pub(crate) fn retries_in_place(
        &self,
        error: &crate::listener::HandlerError,
        attempt: u32,
    ) -> bool {
        self.retry_topics.is_none() && error.is_retryable() && attempt < self.errors.max_attempts
    }

    /// When the committer commits: the ack mode and its counts.
    pub(crate) fn commit_schedule(&self) -> committer::Schedule {
        committer::Schedule {
            mode: self.ack_mode,
            ack_count: self.ack_count,
            ack_time: self.ack_time,
        }
    }
}

/// Creates consumer `name` of `spec`'s listener with `context`, subscribes it (or, with
/// explicit partitions, has it assign its `share`) and starts its thread, which runs until
/// `stopping` turns true.
fn start_consumer(
    spec: &ListenerSpec,
    (name, share): (&str, Option<Vec<(String, i32)>>),
    context: std::io::Result<consumer::ContainerContext>,
    props: &std::collections::BTreeMap<String, String>,
    stopping: &watch::Receiver<bool>,
) -> Result<(consumer::Assignment, consumer::Seeks, consumer::Ending), Error> {
    let cannot = |what: &str| format!("listener `{}`: cannot {what} {name}", spec.id);
    let context = context.map_err(|error| Error::Listener {
        listener: spec.id.to_owned(),
        message: format!("{}: {error}", cannot("start the commit thread of")),
    })?;
    let (assignment, seeks) = (context.assignment(), context.seeks());
    let created: consumer::ListenerConsumer = client::client_config(props)
        .create_with_context(context)
        .map_err(Error::kafka(cannot("create consumer")))?;
    let created = Arc::new(created);
    created.context().attach(&created);
    if share.is_none() {
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        created.subscribe(&topics).map_err(Error::kafka(format!(
            "listener `{}`: cannot subscribe to {topics:?}",
            spec.id
        )))?;
    }
    let ending =
        consumer::start(created, share, stopping.clone()).map_err(|error| Error::Listener {
            listener: spec.id.to_owned(),
            message: format!("{}: {error}", cannot("start the thread of")),
        })?;
    Ok((assignment, seeks, ending))
}

/// How many consumers a listener's container starts: `concurrency`, but with explicit partitions
/// no more than it names (Spring lowers the concurrency the same way).
fn consumers(spec: &ListenerSpec) -> usize {
    let concurrency = usize::try_from(spec.concurrency).unwrap_or(usize::MAX);
    match &spec.explicit {
        Some(explicit) if explicit.count(&spec.topics) < concurrency => {
            tracing::warn!(
                listener = spec.id,
                concurrency,
                "{explicit} of {:?}: {} consumer(s) started, one per partition",
                spec.topics,
                explicit.count(&spec.topics)
            );
            explicit.count(&spec.topics).max(1)
        }
        _ => concurrency,
    }
}

/// The running consumers of one listener.
pub(crate) struct ListenerContainer {
    consumers: Vec<(
        String,
        consumer::Assignment,
        consumer::Seeks,
        consumer::Ending,
    )>,
    /// Turned true to stop the consumers (or dropped).
    stop: watch::Sender<bool>,
    /// What its consumers report to `/health`.
    health: Vec<Arc<ConsumerHealth>>,
}

impl ListenerContainer {
    /// Creates and subscribes `concurrency` consumers and starts their threads; their partitions
    /// stop reading while `paused` covers them. On an error, the consumers started already stop
    /// and none of them stays in `health`.
    pub(crate) fn start(
        spec: Arc<ListenerSpec>,
        (settings, bootstrap): (&KafkaSettings, &str),
        app: &Arc<AppContext>,
        paused: &watch::Receiver<Paused>,
        health: &Health,
        statistics: Option<Duration>,
    ) -> Result<Self, Error> {
        let (stop, stopping) = watch::channel(false);
        let mut container = ListenerContainer {
            consumers: Vec::new(),
            stop,
            health: Vec::new(),
        };
        let consumers = consumers(&spec);
        for index in 0..consumers {
            let share = spec
                .explicit
                .as_ref()
                .map(|explicit| explicit.share(&spec.topics, index, consumers));
            let name = format!("{}-{index}", spec.id);
            let reporting = health.consumer(spec.id, &name, &spec.group);
            container.health.push(Arc::clone(&reporting));
            let mut props =
                settings.consumer_properties(bootstrap, &spec.group, &index.to_string());
            if let Some(interval) = statistics {
                props
                    .entry("statistics.interval.ms".to_owned())
                    .or_insert_with(|| interval.as_millis().to_string());
            }
            let context = consumer::ContainerContext::new(
                name.clone(),
                Arc::clone(&spec),
                Arc::clone(app),
                (reporting, paused.clone()),
            );
            match start_consumer(&spec, (&name, share), context, &props, &stopping) {
                Ok((assignment, seeks, ending)) => {
                    container.consumers.push((name, assignment, seeks, ending));
                }
                Err(error) => {
                    health.forget(&container.health);
                    return Err(error);
                }
            }
        }
        Ok(container)
    }

    /// Asks whichever consumer has `topic`-`partition` to seek it; `false` when none has it.
    pub(crate) fn seek(&self, topic: &str, partition: i32, to: SeekTo) -> bool {
        self.consumers
            .iter()
            .any(|(_, _, seeks, _)| seeks.send(topic, partition, to))
    }

    /// The health reports of its consumers.
    pub(crate) fn health(&self) -> &[Arc<ConsumerHealth>] {
        &self.health
    }

    /// Asks every consumer to stop: see [`ListenerContainer::join`].
    pub(crate) fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Each consumer's name and its assigned (topic, partition)s.
    pub(crate) fn assignments(&self) -> Vec<(String, Vec<(String, i32)>)> {
        self.consumers
            .iter()
            .map(|(name, assignment, _, _)| (name.clone(), assignment.get()))
            .collect()
    }

    /// Waits until every consumer stopped (after [`ListenerContainer::signal_stop`]); returns
    /// the records abandoned at the shutdown timeout.
    pub(crate) async fn join(self) -> Vec<String> {
        let mut abandoned = Vec::new();
        for (name, _, _, ending) in self.consumers {
            match ending.abandoned.await {
                Ok(records) => abandoned.extend(records),
                Err(_) => tracing::error!(consumer = %name, "listener consumer thread failed"),
            }
            if tokio::time::timeout(CLOSE_TIMEOUT, ending.closed)
                .await
                .is_err()
            {
                tracing::error!(
                    consumer = %name,
                    "closing did not finish within {CLOSE_TIMEOUT:?} (is the broker reachable?); \
                     records acknowledged since the last commit will be delivered again"
                );
            }
        }
        abandoned
    }
}
