//! An in-process Kafka: librdkafka's mock cluster, for a first `cargo run` and for fast tests.
//!
//! It speaks the Kafka protocol on a loopback port (one the kernel picks, or a fixed one with
//! [`EmbeddedKafka::start_on_port`]), so any client (another process too) can use its
//! [`bootstrap_servers`](EmbeddedKafka::bootstrap_servers). Data lives in memory and is gone
//! when it is dropped. It has no CreateTopics handler: create topics with
//! [`create_topic`](EmbeddedKafka::create_topic).

mod port;

use std::net::SocketAddr;
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
    /// How many brokers it has (ids 1 to this).
    brokers: i32,
    /// Relays the fixed port, when one was asked for.
    _forwarder: Option<port::Forwarder>,
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self, Error> {
        Self::start_cluster(1)
    }

    /// Starts a cluster of `brokers` brokers (ids 1 to `brokers`, at least one), for tests of
    /// partition leaders moving and brokers failing: topics are replicated to up to three of
    /// them, and every broker is in the bootstrap list.
    pub fn start_cluster(brokers: u16) -> Result<Self, Error> {
        let brokers = i32::from(brokers.max(1));
        let (owner, bootstrap) = owner(brokers)?;
        Ok(EmbeddedKafka {
            inner: Arc::new(Inner {
                owner,
                bootstrap,
                brokers,
                _forwarder: None,
            }),
        })
    }

    /// Starts a one-broker cluster that clients reach at `127.0.0.1:port` (`kafka.embedded.port`),
    /// so that another terminal's producer or `kcat` finds it at the same address every run.
    pub fn start_on_port(port: u16) -> Result<Self, Error> {
        let (owner, bootstrap) = owner(1)?;
        let broker: SocketAddr = bootstrap.parse().map_err(|error| Error::Embedded {
            message: format!("unexpected broker address `{bootstrap}`: {error}"),
        })?;
        let forwarder = port::Forwarder::start(port, broker).map_err(|error| Error::Embedded {
            message: format!("cannot listen on 127.0.0.1:{port} (kafka.embedded.port): {error}"),
        })?;
        let cluster = native_mock(&owner)?;
        // SAFETY: `owner` created the mock cluster and lives on in `Inner`; the call copies the
        // host name under the cluster's lock.
        unsafe {
            rdkafka::bindings::rd_kafka_mock_broker_set_host_port(
                cluster,
                1,
                c"127.0.0.1".as_ptr(),
                i32::from(port),
            );
        }
        Ok(EmbeddedKafka {
            inner: Arc::new(Inner {
                owner,
                bootstrap: format!("127.0.0.1:{port}"),
                brokers: 1,
                _forwarder: Some(forwarder),
            }),
        })
    }

    /// The address to give clients.
    pub fn bootstrap_servers(&self) -> &str {
        &self.inner.bootstrap
    }

    /// How many brokers the cluster has (ids 1 to this).
    pub fn brokers(&self) -> i32 {
        self.inner.brokers
    }

    /// Creates `topic` with `partitions` partitions, replicated to up to three brokers.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        mock(&self.inner.owner)?
            .create_topic(topic, partitions, self.inner.brokers.min(3))
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
        let cluster = native_mock(&self.inner.owner)?;
        // SAFETY: `owner` created the mock cluster and outlives this call; the setter only queues
        // an operation on the cluster's own thread.
        unsafe {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, millis);
        }
        Ok(())
    }

    /// The mock cluster itself, for fault injection (`request_errors`, `broker_down`, ...).
    pub fn mock_cluster(&self) -> Result<MockCluster<'_, DefaultProducerContext>, Error> {
        mock(&self.inner.owner)
    }
}

/// The client that owns a new mock cluster of `brokers` brokers, and the cluster's addresses.
fn owner(brokers: i32) -> Result<(BaseProducer, String), Error> {
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", brokers.to_string())
        .create()
        .map_err(Error::kafka("cannot start the embedded Kafka cluster"))?;
    let bootstrap = mock(&owner)?.bootstrap_servers();
    Ok((owner, bootstrap))
}

fn mock(owner: &BaseProducer) -> Result<MockCluster<'_, DefaultProducerContext>, Error> {
    owner.client().mock_cluster().ok_or_else(no_mock_cluster)
}

/// The C handle of `owner`'s mock cluster, for the calls rdkafka's `MockCluster` does not wrap.
fn native_mock(
    owner: &BaseProducer,
) -> Result<*mut rdkafka::bindings::rd_kafka_mock_cluster_t, Error> {
    // SAFETY: `owner` is a live client; librdkafka only reads its mock cluster pointer.
    let cluster =
        unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
    if cluster.is_null() {
        Err(no_mock_cluster())
    } else {
        Ok(cluster)
    }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::BaseRecord;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    use super::*;

    #[test]
    fn clients_find_the_broker_at_the_fixed_port_and_nowhere_else() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port");
        let kafka = EmbeddedKafka::start_on_port(port).expect("the cluster starts");
        assert_eq!(kafka.bootstrap_servers(), format!("127.0.0.1:{port}"));
        kafka.create_topic("fixed", 1).expect("topic");

        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .create()
            .expect("producer");
        producer
            .send(BaseRecord::to("fixed").key("k").payload("v"))
            .map_err(|(error, _)| error)
            .expect("queued");
        producer.flush(Duration::from_secs(10)).expect("delivered");

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("group.id", "fixed-reader")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some("fixed"), Duration::from_secs(10))
            .expect("metadata");
        let ports: Vec<i32> = metadata.brokers().iter().map(|b| b.port()).collect();
        assert_eq!(
            ports,
            [i32::from(port)],
            "the broker advertises the fixed port"
        );
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("fixed", 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&assignment).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(10);
        let value = loop {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                break message.payload().map(<[u8]>::to_vec);
            }
            assert!(Instant::now() < deadline, "the record was not read back");
        };
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    }
}
