//! Requests that wait for their reply (Spring's `ReplyingKafkaTemplate`): the template names
//! its reply topic and a fresh correlation id in each request's headers, and a reader of the
//! reply topic hands each reply to the request whose correlation id it carries.
//!
//! The reader is assigned every partition of the reply topic from its end at startup (no
//! group, nothing committed): replies to requests made before a restart are not wanted, and
//! several instances may share one reply topic (each ignores the replies it is not waiting
//! for, as Spring's `sharedReplyTopic`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::{CORRELATION_ID_HEADER, EXCEPTION_MESSAGE_HEADER};
use crate::config::{client, KafkaSettings};
use crate::error::Error;
use crate::record::{ConsumerRecord, RecordView};
use crate::sync::lock;
use crate::template::SendError;

/// How long the reader's fetches wait for replies at most; also the most a reply waits in the
/// broker when it does not end a fetch's wait (the mock cluster waits the whole time).
const FETCH_WAIT: &str = "50";

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The template has no reply topic: set `kafka.template.reply-topic`.
    #[error("the template has no reply topic: set kafka.template.reply-topic")]
    NoReplyTopic,
    /// The request was not sent. (Not named `Send`: a public item of that name would make
    /// rustc spell the `Send` trait `std::marker::Send` in users' error messages.)
    #[error(transparent)]
    NotSent(#[from] SendError),
    /// No reply arrived in time (Spring's `KafkaReplyTimeoutException`).
    #[error("no reply to the request on `{topic}` within {after:?}")]
    Timeout {
        /// The request's topic.
        topic: String,
        /// How long it waited.
        after: Duration,
    },
    /// The replier answered with an error: the reply carries Spring's
    /// `kafka_exception-message` header.
    #[error("the replier answered the request on `{topic}` with an error: {message}")]
    Remote {
        /// The request's topic.
        topic: String,
        /// The header's text.
        message: String,
        /// The reply.
        reply: Box<ConsumerRecord>,
    },
}

type Pending = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<ConsumerRecord>>>>;

/// The reader of the reply topic, and the requests waiting for it.
pub(crate) struct ReplyReader {
    topic: String,
    pending: Pending,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReplyReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplyReader {
    /// Starts reading `topic` from its end.
    pub(crate) async fn start(
        settings: &KafkaSettings,
        bootstrap: &str,
        topic: &str,
    ) -> Result<Self, Error> {
        let cannot = |what: &str| Error::kafka(format!("cannot {what} the reply topic `{topic}`"));
        let mut props =
            settings.consumer_properties(bootstrap, &format!("{topic}.reader"), "replies");
        props
            .entry("fetch.wait.max.ms".to_owned())
            .or_insert_with(|| FETCH_WAIT.to_owned());
        let consumer: StreamConsumer = client::client_config(&props)
            .create()
            .map_err(cannot("create a reader of"))?;
        let consumer = Arc::new(consumer);
        let (reader, name) = (Arc::clone(&consumer), topic.to_owned());
        let assignment = tokio::task::spawn_blocking(move || ends(&reader, &name))
            .await
            .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
            .map_err(cannot("find the end of"))?;
        consumer.assign(&assignment).map_err(cannot("assign"))?;
        let pending = Pending::default();
        let task = tokio::spawn(read(consumer, topic.into(), Arc::clone(&pending)));
        Ok(ReplyReader {
            topic: topic.to_owned(),
            pending,
            task,
        })
    }

    /// The reply topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits for the reply carrying `correlation`; registered before the request is sent.
    pub(crate) fn expect(&self, correlation: Vec<u8>) -> Expected {
        let (sender, receiver) = oneshot::channel();
        lock(&self.pending).insert(correlation.clone(), sender);
        Expected {
            pending: Arc::clone(&self.pending),
            correlation,
            receiver,
        }
    }
}

/// A reply being waited for; dropping it forgets the request.
pub(crate) struct Expected {
    pending: Pending,
    correlation: Vec<u8>,
    receiver: oneshot::Receiver<ConsumerRecord>,
}

impl Expected {
    /// The reply, within `timeout`.
    pub(crate) async fn receive(
        mut self,
        topic: &str,
        timeout: Duration,
    ) -> Result<ConsumerRecord, RequestError> {
        let reply = match tokio::time::timeout(timeout, &mut self.receiver).await {
            Ok(Ok(reply)) => reply,
            // The reader stopped (the application is shutting down) or the time is up.
            Ok(Err(_)) | Err(_) => {
                return Err(RequestError::Timeout {
                    topic: topic.to_owned(),
                    after: timeout,
                })
            }
        };
        match reply.header(EXCEPTION_MESSAGE_HEADER) {
            Some(message) => Err(RequestError::Remote {
                topic: topic.to_owned(),
                message: String::from_utf8_lossy(message).into_owned(),
                reply: Box::new(reply),
            }),
            None => Ok(reply),
        }
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.correlation);
    }
}

/// A correlation id of 16 bytes, as Spring's default (a random UUID's): random per process,
/// unique within it.
pub(crate) fn correlation_id() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    let (high, low) = *PROCESS.get_or_init(|| {
        let state = std::collections::hash_map::RandomState::new();
        let mut first = state.build_hasher();
        first.write_u32(std::process::id());
        let mut second = state.build_hasher();
        second.write_u64(first.finish());
        (first.finish(), second.finish())
    });
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&high.to_be_bytes());
    id.extend_from_slice(&(low ^ count).to_be_bytes());
    id
}

/// Every partition of `topic` at its current end.
fn ends(
    consumer: &StreamConsumer,
    topic: &str,
) -> Result<TopicPartitionList, rdkafka::error::KafkaError> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|found| found.name() == topic)
        .map(|found| found.partitions().len())
        .unwrap_or(0);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
        let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        assignment.add_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    if assignment.count() == 0 {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(assignment)
}

/// Hands each reply to the request waiting for it.
async fn read(consumer: Arc<StreamConsumer>, topic: Arc<str>, pending: Pending) {
    loop {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(topic = %topic, %error, "reading replies failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let reply = RecordView::of_message(&message, &topic).to_record();
        let Some(correlation) = reply.header(CORRELATION_ID_HEADER) else {
            tracing::error!(
                reply = %reply.coordinates(),
                "a reply without `{CORRELATION_ID_HEADER}`: the replier must copy the request's"
            );
            continue;
        };
        let waiting = lock(&pending).remove(correlation);
        match waiting {
            Some(sender) => {
                let _ = sender.send(reply);
            }
            None => tracing::debug!(
                reply = %reply.coordinates(),
                "no request waits for this reply: timed out, or another instance's"
            ),
        }
    }
}
