//! An in-process Kafka: librdkafka's mock cluster, for a first `cargo run` and for fast tests.
//!
//! It speaks the Kafka protocol on a loopback port, so any client (another process too) can use
//! its [`bootstrap_servers`](EmbeddedKafka::bootstrap_servers). Data lives in memory and is gone
//! when it is dropped. It has no CreateTopics handler: create topics with
//! [`create_topic`](EmbeddedKafka::create_topic).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

use crate::error::Error;

/// A running mock cluster; stops when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedKafka {
    inner: Arc<Inner>,
}

struct Inner {
    /// The client that owns the mock cluster (`test.mock.num.brokers`).
    owner: BaseProducer,
    bootstrap: String,
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self, Error> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .map_err(Error::kafka("cannot start the embedded Kafka cluster"))?;
        let bootstrap = mock(&owner)?.bootstrap_servers();
        Ok(EmbeddedKafka {
            inner: Arc::new(Inner { owner, bootstrap }),
        })
    }

    /// The address to give clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        mock(&self.inner.owner)?
            .create_topic(topic, partitions, 1)
            .map_err(Error::kafka(format!(
                "cannot create topic `{topic}` on the embedded cluster"
            )))
    }

    /// Sets how long the cluster waits for more members before a group's first rebalance
    /// (Kafka's `group.initial.rebalance.delay.ms`; 3 s unless set). A test whose group has one
    /// member joins in ~0.1 s with zero; with several members joining at once, a short delay lets
    /// them settle in one rebalance.
    pub fn set_group_initial_rebalance_delay(&self, delay: Duration) -> Result<(), Error> {
        let millis = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `owner` created the mock cluster and outlives this call; the setter only queues
        // an operation on the cluster's own thread.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(
                self.inner.owner.client().native_ptr(),
            );
            if cluster.is_null() {
                return Err(no_mock_cluster());
            }
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, millis);
        }
        Ok(())
    }

    /// The mock cluster itself, for fault injection (`request_errors`, `broker_down`, ...).
    pub fn mock_cluster(&self) -> Result<MockCluster<'_, DefaultProducerContext>, Error> {
        mock(&self.inner.owner)
    }
}

fn mock(owner: &BaseProducer) -> Result<MockCluster<'_, DefaultProducerContext>, Error> {
    owner.client().mock_cluster().ok_or_else(no_mock_cluster)
}

fn no_mock_cluster() -> Error {
    Error::Embedded {
        message: "librdkafka did not create a mock cluster".to_owned(),
    }
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.inner.bootstrap)
            .finish()
    }
}
