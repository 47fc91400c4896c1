//! The cluster a test runs on, and the application under test started on it.

use std::time::Duration;

use crate::app::KafkaApplication;
use crate::config::Config;
use crate::embedded::EmbeddedKafka;
use crate::error::Error;
use crate::template::KafkaTemplate;

use super::faults::Faults;
use super::produce::Produce;

/// How long a new group waits for more members before its first rebalance: long enough for the
/// consumers of one listener (`concurrency`), started together, to join in one rebalance (on the
/// mock cluster a member that misses the first generation holds the next rebalance for the
/// session timeout; 250 ms was seen to miss it with `concurrency = 3` on two busy cores), and
/// shorter than the 3 s a broker waits by default.
const GROUP_JOIN_DELAY: Duration = Duration::from_secs(1);

/// The cluster a test runs on: by default a fresh in-process one (librdkafka's mock cluster),
/// or a real one ([`connect`](TestKafka::connect), [`from_env`](TestKafka::from_env)) for a
/// suite that also runs against the brokers it will meet in production. Everything but
/// [`faults`](TestKafka::faults) works on both.
///
/// Dropping it (and every application started on it) stops an in-process cluster; nothing is
/// shared between tests, so tests run in parallel (on a real cluster: give each test its own
/// topics and groups).
#[derive(Debug, Clone)]
pub struct TestKafka {
    backend: Backend,
    template: KafkaTemplate,
}

#[derive(Debug, Clone)]
enum Backend {
    Embedded(EmbeddedKafka),
    External(String),
}

impl TestKafka {
    /// Starts a one-broker cluster in the process on a free loopback port, with a group's first
    /// join after one second (a broker's default is three).
    ///
    /// # Panics
    /// If librdkafka cannot start its mock cluster.
    pub fn start() -> Self {
        Self::start_cluster(1)
    }

    /// Starts an in-process cluster of `brokers` brokers (ids 1 to `brokers`), topics replicated
    /// to up to three: for tests that move partition leaders and the group coordinator, and take
    /// brokers down ([`faults`](TestKafka::faults)).
    ///
    /// # Panics
    /// If librdkafka cannot start its mock cluster.
    pub fn start_cluster(brokers: u16) -> Self {
        let embedded = EmbeddedKafka::start_cluster(brokers)
            .unwrap_or_else(|error| panic!("the test Kafka cluster did not start: {error}"));
        embedded
            .set_group_initial_rebalance_delay(GROUP_JOIN_DELAY)
            .unwrap_or_else(|error| panic!("cannot set the test cluster's join delay: {error}"));
        Self::on(Backend::Embedded(embedded))
    }

    /// The real cluster at `bootstrap_servers` (`host:port,...`). Its topics are created through
    /// the admin API; [`faults`](TestKafka::faults) is not available.
    pub fn connect(bootstrap_servers: &str) -> Self {
        Self::on(Backend::External(bootstrap_servers.to_owned()))
    }

    /// The cluster at `KAFKA_BOOTSTRAP_SERVERS` when it is set (the same tests against a real
    /// broker, e.g. in a second CI pass), else a fresh in-process one.
    pub fn from_env() -> Self {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.trim().is_empty() => Self::connect(servers.trim()),
            _ => Self::start(),
        }
    }

    fn on(backend: Backend) -> Self {
        let bootstrap = match &backend {
            Backend::Embedded(embedded) => embedded.bootstrap_servers(),
            Backend::External(servers) => servers,
        };
        let template = KafkaTemplate::new(&Config::default().kafka, bootstrap)
            .unwrap_or_else(|error| panic!("cannot create the test producer: {error}"));
        TestKafka { backend, template }
    }

    /// The address to give other clients (another process too).
    pub fn bootstrap_servers(&self) -> &str {
        match &self.backend {
            Backend::Embedded(embedded) => embedded.bootstrap_servers(),
            Backend::External(servers) => servers,
        }
    }

    /// The in-process cluster (e.g. for [`EmbeddedKafka::mock_cluster`]'s lower-level faults);
    /// `None` on a real cluster.
    pub fn embedded(&self) -> Option<&EmbeddedKafka> {
        match &self.backend {
            Backend::Embedded(embedded) => Some(embedded),
            Backend::External(_) => None,
        }
    }

    /// Creates `topic` with `partitions` partitions (on a real cluster through the admin API,
    /// replication factor 1). An application creates its listeners' topics itself when it starts
    /// (as declared in `[[kafka.topics]]`; on the in-process cluster undeclared ones get 6
    /// partitions, or the listener's concurrency if higher).
    ///
    /// # Panics
    /// If the cluster refuses (e.g. a partition count below one, or a topic that exists).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let created = match &self.backend {
            Backend::Embedded(embedded) => embedded.create_topic(topic, partitions),
            Backend::External(servers) => create_topic(servers, topic, partitions),
        };
        created.unwrap_or_else(|error| panic!("cannot create topic `{topic}`: {error}"));
    }

    /// An application on this cluster configured by `toml` (an `application.toml`'s text; its
    /// `bootstrap-servers`, if any, is replaced), ready for the usual builder:
    /// `with_listeners`, `with_state`, `with_property`, hooks, then `start`.
    ///
    /// # Panics
    /// If `toml` is not a valid configuration (the message names the key and what was expected).
    pub fn application(&self, toml: &str) -> KafkaApplication {
        let config = Config::from_toml_str(toml, "the test's configuration")
            .unwrap_or_else(|error| panic!("{error}"));
        self.application_with(config)
    }

    /// An application on this cluster with `config` (e.g. the application's own files loaded
    /// with [`Config::load_layers`]); its `bootstrap-servers`, if any, is replaced.
    pub fn application_with(&self, config: Config) -> KafkaApplication {
        match &self.backend {
            Backend::Embedded(embedded) => {
                KafkaApplication::new(config).with_embedded(embedded.clone())
            }
            Backend::External(servers) => {
                KafkaApplication::new(config.with_bootstrap_servers(servers.as_str()))
            }
        }
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
    ///
    /// # Panics
    /// On a real cluster, which takes no orders (skip such a test there: `if
    /// kafka.embedded().is_none() { return; }`).
    pub fn faults(&self) -> Faults<'_> {
        match &self.backend {
            Backend::Embedded(embedded) => Faults::new(embedded),
            Backend::External(servers) => panic!(
                "broker faults need the in-process cluster; this test runs on the cluster at {servers}"
            ),
        }
    }
}

/// Creates a topic through the admin API of the cluster at `servers`, on a thread of its own
/// (the caller may be inside an async runtime, or not).
fn create_topic(servers: &str, topic: &str, partitions: i32) -> Result<(), Error> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .map_err(Error::kafka("cannot create the test's admin client"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    let results = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(admin.create_topics([&new], &options)))
            })
            .join()
    });
    let failed = |message: String| Error::Kafka {
        context: format!("cannot create topic `{topic}` on {servers}"),
        source: rdkafka::error::KafkaError::AdminOpCreation(message),
    };
    match results {
        Ok(Ok(Ok(results))) => results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), |(_, code)| Err(failed(code.to_string()))),
        Ok(Ok(Err(error))) => Err(Error::kafka(format!(
            "cannot create topic `{topic}` on {servers}"
        ))(error)),
        Ok(Err(error)) => Err(failed(format!("no runtime for the admin call: {error}"))),
        Err(_) => Err(failed("the admin call panicked".to_owned())),
    }
}
