//! Broker faults a test injects into its cluster, to see what the application under test does
//! when commits fail, the coordinator moves away or the broker goes down.

use std::time::Duration;

use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;

use crate::embedded::EmbeddedKafka;

/// The id of the test cluster's first broker (its only one, unless started with
/// [`TestKafka::start_cluster`](super::TestKafka::start_cluster)).
const BROKER: i32 = 1;

/// A kind of Kafka request, named after its protocol API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `Produce`: what the template (and dead-letter publishing) sends.
    Produce,
    /// `Fetch`: what consumers read records with.
    Fetch,
    /// `ListOffsets`: a consumer's start position without a committed offset.
    ListOffsets,
    /// `Metadata`: topics, partitions and leaders.
    Metadata,
    /// `OffsetCommit`: a listener's commits.
    OffsetCommit,
    /// `OffsetFetch`: a consumer's committed offsets, read when it is assigned partitions.
    OffsetFetch,
    /// `FindCoordinator`: which broker coordinates a group.
    FindCoordinator,
    /// `JoinGroup`: a consumer joining its group.
    JoinGroup,
    /// `SyncGroup`: a group's assignment handed out.
    SyncGroup,
    /// `Heartbeat`: a member staying in its group.
    Heartbeat,
    /// `LeaveGroup`: a member leaving (shutdown).
    LeaveGroup,
}

impl Request {
    fn api_key(self) -> RDKafkaApiKey {
        match self {
            Request::Produce => RDKafkaApiKey::Produce,
            Request::Fetch => RDKafkaApiKey::Fetch,
            Request::ListOffsets => RDKafkaApiKey::ListOffsets,
            Request::Metadata => RDKafkaApiKey::Metadata,
            Request::OffsetCommit => RDKafkaApiKey::OffsetCommit,
            Request::OffsetFetch => RDKafkaApiKey::OffsetFetch,
            Request::FindCoordinator => RDKafkaApiKey::FindCoordinator,
            Request::JoinGroup => RDKafkaApiKey::JoinGroup,
            Request::SyncGroup => RDKafkaApiKey::SyncGroup,
            Request::Heartbeat => RDKafkaApiKey::Heartbeat,
            Request::LeaveGroup => RDKafkaApiKey::LeaveGroup,
        }
    }
}

/// The error a failed request is answered with (Kafka's error codes), or a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerError {
    /// `REQUEST_TIMED_OUT`: retriable; clients send the request again.
    RequestTimedOut,
    /// `NOT_COORDINATOR`: the group's coordinator moved; clients look it up again.
    NotCoordinator,
    /// `COORDINATOR_NOT_AVAILABLE`.
    CoordinatorNotAvailable,
    /// `COORDINATOR_LOAD_IN_PROGRESS`.
    CoordinatorLoadInProgress,
    /// `NOT_LEADER_OR_FOLLOWER`: the partition's leader moved.
    NotLeaderOrFollower,
    /// `REBALANCE_IN_PROGRESS`: a commit during a rebalance.
    RebalanceInProgress,
    /// `UNKNOWN_MEMBER_ID`: the member was evicted from its group.
    UnknownMemberId,
    /// `NOT_ENOUGH_REPLICAS`: a produce with `acks=all` below `min.insync.replicas`.
    NotEnoughReplicas,
    /// `TOPIC_AUTHORIZATION_FAILED`: not retriable.
    TopicAuthorizationFailed,
    /// `GROUP_AUTHORIZATION_FAILED`: not retriable.
    GroupAuthorizationFailed,
    /// No answer: the broker drops the connection.
    Disconnect,
}

impl BrokerError {
    fn code(self) -> RDKafkaRespErr {
        match self {
            BrokerError::RequestTimedOut => RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            BrokerError::NotCoordinator => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            BrokerError::CoordinatorNotAvailable => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE
            }
            BrokerError::CoordinatorLoadInProgress => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS
            }
            BrokerError::NotLeaderOrFollower => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION
            }
            BrokerError::RebalanceInProgress => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS
            }
            BrokerError::UnknownMemberId => RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            BrokerError::NotEnoughReplicas => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            BrokerError::TopicAuthorizationFailed => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            }
            BrokerError::GroupAuthorizationFailed => {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
            }
            BrokerError::Disconnect => RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        }
    }
}

/// Faults of a [`TestKafka`](super::TestKafka)'s broker, from [`TestKafka::faults`](super::TestKafka::faults).
///
/// ```
/// use std::time::Duration;
/// use kafka_runtime::test::{BrokerError, Request, TestKafka};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let kafka = TestKafka::start();
/// // The application's next 5 commits time out; it must send them again until one lands.
/// kafka.faults().fail_next(Request::OffsetCommit, 5, BrokerError::RequestTimedOut);
/// kafka.faults().clear(Request::OffsetCommit);
/// kafka.faults().round_trip_time(Duration::from_millis(50));
/// # }
/// ```
#[derive(Debug)]
pub struct Faults<'k> {
    embedded: &'k EmbeddedKafka,
}

impl<'k> Faults<'k> {
    pub(super) fn new(embedded: &'k EmbeddedKafka) -> Self {
        Faults { embedded }
    }

    /// The next `times` requests of kind `request` fail with `error` (then requests succeed
    /// again). Calls add up: the errors are answered in the order they were given.
    pub fn fail_next(&self, request: Request, times: usize, error: BrokerError) {
        self.mock(|mock| mock.request_errors(request.api_key(), &vec![error.code(); times]));
    }

    /// Forgets the failures still queued for `request`.
    pub fn clear(&self, request: Request) {
        self.mock(|mock| mock.clear_request_errors(request.api_key()));
    }

    /// Takes the (first) broker down: connections are dropped and refused until
    /// [`broker_up`](Faults::broker_up).
    pub fn broker_down(&self) {
        self.take_broker_down(BROKER);
    }

    /// Brings the (first) broker back.
    pub fn broker_up(&self) {
        self.bring_broker_up(BROKER);
    }

    /// Takes broker `id` of the cluster down. Partitions it leads stay without a reachable
    /// leader until [`move_leader`](Faults::move_leader) moves them (what a real cluster's
    /// controller does within seconds) or the broker is back.
    pub fn take_broker_down(&self, id: i32) {
        self.mock(|mock| mock.broker_down(id))
            .unwrap_or_else(|error| panic!("cannot take broker {id} down: {error}"));
    }

    /// Brings broker `id` back.
    pub fn bring_broker_up(&self, id: i32) {
        self.mock(|mock| mock.broker_up(id))
            .unwrap_or_else(|error| panic!("cannot bring broker {id} up: {error}"));
    }

    /// Makes broker `id` the leader of `topic`-`partition` (a leader election): clients that
    /// ask the old leader are told `NOT_LEADER_FOR_PARTITION` and look it up again.
    pub fn move_leader(&self, topic: &str, partition: i32, id: i32) {
        self.mock(|mock| mock.partition_leader(topic, partition, Some(id)))
            .unwrap_or_else(|error| {
                panic!("cannot move the leader of {topic}-{partition} to broker {id}: {error}")
            });
    }

    /// Makes broker `id` the coordinator of `group`: its members find it again and rejoin.
    pub fn move_coordinator(&self, group: &str, id: i32) {
        let coordinator = rdkafka::mocking::MockCoordinator::Group(group.to_owned());
        self.mock(|mock| mock.coordinator(coordinator, id))
            .unwrap_or_else(|error| {
                panic!("cannot move the coordinator of {group} to broker {id}: {error}")
            });
    }

    /// Delays every answer of the broker by `delay` (zero: no delay).
    pub fn round_trip_time(&self, delay: Duration) {
        self.mock(|mock| mock.broker_round_trip_time(BROKER, delay))
            .unwrap_or_else(|error| panic!("cannot slow the test broker down: {error}"));
    }

    fn mock<T>(
        &self,
        action: impl FnOnce(
            &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        ) -> T,
    ) -> T {
        let mock = self
            .embedded
            .mock_cluster()
            .unwrap_or_else(|error| panic!("the test cluster has no mock: {error}"));
        action(&mock)
    }
}
