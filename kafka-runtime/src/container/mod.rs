//! Listener containers: `concurrency` consumers per listener, each dispatching its partitions to
//! per-partition workers and committing what was acknowledged.
//!
//! Spring's semantics: each consumer is its own librdkafka consumer in the listener's group, so
//! `concurrency = 3` on 6 partitions gives 3 group members with 2 partitions each. Within a
//! consumer, each partition has its own worker task: records of one partition reach the handler
//! in offset order, and a slow partition does not stall the others.

mod committer;
mod consumer;
mod error_handler;
mod partition;
mod retry_topics;
mod worker;

pub(crate) use error_handler::{DeadLetterPublisher, ErrorPolicy};
pub(crate) use retry_topics::RetryTopics;

pub(crate) use partition::PartitionState;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{client, AckMode, Format, KafkaSettings};
use crate::context::AppContext;
use crate::error::Error;
use crate::extract::RecordContext;
use crate::listener::Invocation;
use crate::management::health::Health;

/// A listener with its configuration resolved: what every consumer of its container needs.
pub(crate) struct ListenerSpec {
    pub(crate) id: &'static str,
    pub(crate) topics: Vec<String>,
    pub(crate) group: String,
    pub(crate) concurrency: u32,
    pub(crate) ack_mode: AckMode,
    pub(crate) invoke: fn(&mut RecordContext) -> Invocation,
    /// (key, value) formats.
    pub(crate) formats: (Format, Format),
    pub(crate) max_in_flight: usize,
    pub(crate) max_poll_records: u32,
    pub(crate) ack_count: u32,
    pub(crate) ack_time: Duration,
    pub(crate) poll_timeout: Duration,
    /// The header whose value follows a record into what its handler produces.
    pub(crate) correlation_header: String,
    /// The level of each record's span.
    pub(crate) record_span: crate::config::SpanLevel,
    /// How long in-flight handlers may run on at shutdown.
    pub(crate) shutdown_timeout: Duration,
    pub(crate) errors: ErrorPolicy,
    /// Non-blocking retries through retry topics, when enabled (then `errors` is not used).
    pub(crate) retry_topics: Option<RetryTopics>,
    /// The listener's own topics; `topics` adds their retry topics.
    pub(crate) main_topics: Vec<String>,
    /// Present when records are republished: to dead-letter or retry topics.
    pub(crate) dead_letter: Option<DeadLetterPublisher>,
}

/// The running consumers of one listener.
pub(crate) struct ListenerContainer {
    id: &'static str,
    consumers: Vec<(Arc<consumer::ConsumerShared>, JoinHandle<Vec<String>>)>,
}

impl ListenerContainer {
    /// Creates and subscribes `concurrency` consumers and starts their poll loops.
    pub(crate) fn start(
        spec: Arc<ListenerSpec>,
        settings: &KafkaSettings,
        bootstrap: &str,
        app: &Arc<AppContext>,
        shutdown: &watch::Receiver<bool>,
        health: &Health,
        statistics: Option<Duration>,
    ) -> Result<Self, Error> {
        let mut consumers = Vec::new();
        for index in 0..spec.concurrency {
            let name = format!("{}-{index}", spec.id);
            let mut props =
                settings.consumer_properties(bootstrap, &spec.group, &index.to_string());
            if let Some(interval) = statistics {
                props
                    .entry("statistics.interval.ms".to_owned())
                    .or_insert_with(|| interval.as_millis().to_string());
            }
            let (shared, commands) = consumer::ConsumerShared::new(
                Arc::clone(&spec),
                name.clone(),
                health.consumer(spec.id, &name, &spec.group),
            );
            let context = consumer::ContainerContext::new(Arc::clone(&shared));
            let created: consumer::ListenerConsumer = client::client_config(&props)
                .create_with_context(context)
                .map_err(Error::kafka(format!(
                    "listener `{}`: cannot create consumer {name}",
                    spec.id
                )))?;
            let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
            created.subscribe(&topics).map_err(Error::kafka(format!(
                "listener `{}`: cannot subscribe to {topics:?}",
                spec.id
            )))?;
            let task = tokio::spawn(consumer::run(
                Arc::clone(&shared),
                Arc::new(created),
                commands,
                shutdown.clone(),
                Arc::clone(app),
            ));
            consumers.push((shared, task));
        }
        Ok(ListenerContainer {
            id: spec.id,
            consumers,
        })
    }

    /// The listener id.
    pub(crate) fn id(&self) -> &'static str {
        self.id
    }

    /// Each consumer's name and its assigned (topic, partition)s.
    pub(crate) fn assignments(&self) -> Vec<(String, Vec<(String, i32)>)> {
        self.consumers
            .iter()
            .map(|(shared, _)| (shared.name.clone(), shared.assignment()))
            .collect()
    }

    /// Waits until every consumer stopped (after the shutdown signal); returns the records
    /// abandoned at the shutdown timeout.
    pub(crate) async fn join(self) -> Vec<String> {
        let mut abandoned = Vec::new();
        for (_, consumer) in self.consumers {
            match consumer.await {
                Ok(records) => abandoned.extend(records),
                Err(error) => tracing::error!(%error, "listener consumer task failed"),
            }
        }
        abandoned
    }
}
