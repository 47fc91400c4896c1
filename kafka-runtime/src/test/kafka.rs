//! The cluster a test runs on, and the application under test started on it.

use std::time::Duration;

use crate::app::KafkaApplication;
use crate::config::Config;
use crate::embedded::EmbeddedKafka;
use crate::template::KafkaTemplate;

use super::faults::Faults;
use super::produce::Produce;

/// How long a new group waits for more members before its first rebalance: long enough for the
/// consumers of one listener (`concurrency`), started together, to join in one rebalance; far
/// shorter than the 3 s a broker waits by default.
const GROUP_JOIN_DELAY: Duration = Duration::from_millis(250);

/// A fresh in-process Kafka cluster for one test, and the tools to drive and observe it.
///
/// Dropping it (and every application started on it) stops the cluster; nothing is shared
/// between tests, so tests run in parallel.
#[derive(Debug, Clone)]
pub struct TestKafka {
    embedded: EmbeddedKafka,
    template: KafkaTemplate,
}

impl TestKafka {
    /// Starts a one-broker cluster on a free loopback port, with group joins in a quarter of a
    /// second.
    ///
    /// # Panics
    /// If librdkafka cannot start its mock cluster.
    pub fn start() -> Self {
        let embedded = EmbeddedKafka::start()
            .unwrap_or_else(|error| panic!("the test Kafka cluster did not start: {error}"));
        embedded
            .set_group_initial_rebalance_delay(GROUP_JOIN_DELAY)
            .unwrap_or_else(|error| panic!("cannot set the test cluster's join delay: {error}"));
        let template = KafkaTemplate::new(&Config::default().kafka, embedded.bootstrap_servers())
            .unwrap_or_else(|error| panic!("cannot create the test producer: {error}"));
        TestKafka { embedded, template }
    }

    /// The address to give other clients (another process too).
    pub fn bootstrap_servers(&self) -> &str {
        self.embedded.bootstrap_servers()
    }

    /// The cluster itself, e.g. for [`EmbeddedKafka::mock_cluster`]'s lower-level faults.
    pub fn embedded(&self) -> &EmbeddedKafka {
        &self.embedded
    }

    /// Creates `topic` with `partitions` partitions. An application creates its listeners' topics
    /// itself when it starts (as declared in `[[kafka.topics]]`, else with 6 partitions, or the
    /// listener's concurrency if higher); a topic that is only produced to is created on first
    /// use with one.
    ///
    /// # Panics
    /// If the cluster refuses (e.g. a partition count below one).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.embedded
            .create_topic(topic, partitions)
            .unwrap_or_else(|error| panic!("cannot create topic `{topic}`: {error}"));
    }

    /// An application on this cluster configured by `toml` (an `application.toml`'s text; its
    /// `bootstrap-servers`, if any, is ignored), ready for the usual builder:
    /// `with_listeners`, `with_state`, `with_property`, then `start`.
    ///
    /// # Panics
    /// If `toml` is not a valid configuration (the message names the key and what was expected).
    pub fn application(&self, toml: &str) -> KafkaApplication {
        let config = Config::from_toml_str(toml, "the test's configuration")
            .unwrap_or_else(|error| panic!("{error}"));
        self.application_with(config)
    }

    /// An application on this cluster with `config` (e.g. the application's own files loaded
    /// with [`Config::load_layers`]); its `bootstrap-servers`, if any, is ignored.
    pub fn application_with(&self, config: Config) -> KafkaApplication {
        KafkaApplication::new(config).with_embedded(self.embedded.clone())
    }

    /// A record to produce to `topic`; finish it with [`Produce::json`], [`Produce::text`],
    /// [`Produce::bytes`] or [`Produce::tombstone`].
    ///
    /// ```
    /// # async fn demo(kafka: kafka_runtime::test::TestKafka) {
    /// let event = serde_json::json!({"event_type": "user_created", "user_id": "user-123"});
    /// kafka.record("user-events").key("user-123").header("correlation_id", "abc-123").json(&event).await;
    /// # }
    /// ```
    pub fn record(&self, topic: &str) -> Produce<'_> {
        Produce::new(&self.template, topic)
    }

    /// Broker faults: the next requests of a kind failing, the broker down, slow round trips.
    pub fn faults(&self) -> Faults<'_> {
        Faults::new(&self.embedded)
    }
}
