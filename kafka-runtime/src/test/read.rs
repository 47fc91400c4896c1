//! What a test reads back: records of a topic, dead letters, a group's committed offsets and lag.
//! Read by clients of their own that join no group, so they change nothing they observe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

use crate::dead_letter::DeadLetter;
use crate::record::{ConsumerRecord, RecordView};

use super::kafka::TestKafka;

/// How long a broker question may take before the test fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two readings of a group's committed offsets.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

impl TestKafka {
    /// Reads `topic` from its beginning until `count` records arrived, and gives them (in offset
    /// order within each partition; partitions interleaved). Spring's
    /// `KafkaTestUtils.getRecords`.
    ///
    /// # Panics
    /// If fewer than `count` records arrive `within` (the message says how many did).
    pub async fn read(&self, topic: &str, count: usize, within: Duration) -> Vec<ConsumerRecord> {
        let (bootstrap, topic) = (self.bootstrap_servers().to_owned(), topic.to_owned());
        blocking(move || {
            let deadline = Instant::now() + within;
            let consumer = reader(&bootstrap, "kafka-runtime-test-reader");
            let partitions = partitions(&consumer, &topic, deadline);
            let mut assignment = TopicPartitionList::new();
            for partition in &partitions {
                assignment
                    .add_partition_offset(&topic, *partition, Offset::Beginning)
                    .unwrap_or_else(|error| panic!("cannot read `{topic}`: {error}"));
            }
            consumer
                .assign(&assignment)
                .unwrap_or_else(|error| panic!("cannot read `{topic}`: {error}"));
            let name: Arc<str> = Arc::from(topic.as_str());
            let mut records = Vec::with_capacity(count);
            while records.len() < count && Instant::now() < deadline {
                if let Some(Ok(message)) = consumer.poll(POLL_INTERVAL) {
                    records.push(RecordView::of_message(&message, &name).to_record());
                }
            }
            assert!(
                records.len() >= count,
                "{} of {count} records arrived on `{topic}` within {within:?}",
                records.len()
            );
            records
        })
        .await
    }

    /// Reads `count` records of the dead-letter topic `topic`, with Spring's `kafka_dlt-*`
    /// headers decoded: where each came from and why it failed.
    ///
    /// # Panics
    /// If fewer than `count` dead letters arrive `within`.
    pub async fn dead_letters(
        &self,
        topic: &str,
        count: usize,
        within: Duration,
    ) -> Vec<DeadLetter> {
        self.read(topic, count, within)
            .await
            .into_iter()
            .map(DeadLetter::from)
            .collect()
    }

    /// The end offset (high watermark) of each partition of `topic`, by partition.
    ///
    /// # Panics
    /// If the topic does not exist, or the broker does not answer.
    pub async fn end_offsets(&self, topic: &str) -> Vec<i64> {
        self.on_partitions("kafka-runtime-test-reader", topic, end_offsets)
            .await
    }

    /// `group`'s committed offset of each partition of `topic` (`None` where it committed
    /// nothing), by partition.
    ///
    /// # Panics
    /// If the topic does not exist, or the broker does not answer.
    pub async fn committed(&self, group: &str, topic: &str) -> Vec<Option<i64>> {
        self.on_partitions(group, topic, committed).await
    }

    /// How many records of `topic` `group` has not committed yet, over all partitions.
    ///
    /// # Panics
    /// If the topic does not exist, or the broker does not answer.
    pub async fn lag(&self, group: &str, topic: &str) -> i64 {
        self.on_partitions(group, topic, |consumer, topic, partitions| {
            lag(
                &end_offsets(consumer, topic, partitions),
                &committed(consumer, topic, partitions),
            )
        })
        .await
    }

    /// Runs `call` off the async runtime with a reader that names `group`, and the partitions of
    /// `topic`.
    async fn on_partitions<T: Send + 'static>(
        &self,
        group: &str,
        topic: &str,
        call: impl FnOnce(&BaseConsumer, &str, &[i32]) -> T + Send + 'static,
    ) -> T {
        let (bootstrap, group, topic) = (
            self.bootstrap_servers().to_owned(),
            group.to_owned(),
            topic.to_owned(),
        );
        blocking(move || {
            let consumer = reader(&bootstrap, &group);
            let partitions = partitions(&consumer, &topic, Instant::now() + ANSWER_TIMEOUT);
            call(&consumer, &topic, &partitions)
        })
        .await
    }

    /// Waits until `group` has committed every record of `topic` (its committed offsets reached
    /// the end offsets): what "the application handled everything" means in Kafka's terms.
    ///
    /// # Panics
    /// If it has not `within`; the message gives the committed and end offsets last read.
    pub async fn wait_committed(&self, group: &str, topic: &str, within: Duration) {
        let (bootstrap, group, topic) = (
            self.bootstrap_servers().to_owned(),
            group.to_owned(),
            topic.to_owned(),
        );
        blocking(move || {
            let deadline = Instant::now() + within;
            let consumer = reader(&bootstrap, &group);
            let partitions = partitions(&consumer, &topic, deadline);
            loop {
                let ends = end_offsets(&consumer, &topic, &partitions);
                let committed = committed(&consumer, &topic, &partitions);
                if lag(&ends, &committed) == 0 {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "group `{group}` did not commit all of `{topic}` within {within:?}: \
                     committed {committed:?}, end offsets {ends:?}"
                );
                std::thread::sleep(POLL_INTERVAL);
            }
        })
        .await;
    }
}

/// Runs a blocking client call off the async runtime; a panic in it is the test's panic.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(call).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the test's reader was cancelled: {error}"),
    }
}

/// A client that reads without joining `group` (it only names it, to read its commits).
fn reader(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .unwrap_or_else(|error| panic!("cannot create the test's reader: {error}"))
}

/// The partitions of `topic`, waiting until it exists (an application creates its topics as it
/// starts) or `deadline`.
fn partitions(consumer: &BaseConsumer, topic: &str, deadline: Instant) -> Vec<i32> {
    loop {
        let found = consumer
            .fetch_metadata(Some(topic), ANSWER_TIMEOUT)
            .ok()
            .and_then(|metadata| {
                let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
                let partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
                (topic.error().is_none() && !partitions.is_empty()).then_some(partitions)
            });
        if let Some(mut partitions) = found {
            partitions.sort_unstable();
            return partitions;
        }
        assert!(
            Instant::now() < deadline,
            "topic `{topic}` does not exist on the test cluster"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn end_offsets(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) -> Vec<i64> {
    partitions
        .iter()
        .map(|partition| {
            consumer
                .fetch_watermarks(topic, *partition, ANSWER_TIMEOUT)
                .map(|(_, high)| high)
                .unwrap_or_else(|error| {
                    panic!("cannot read the end offset of `{topic}` partition {partition}: {error}")
                })
        })
        .collect()
}

fn committed(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) -> Vec<Option<i64>> {
    let mut wanted = TopicPartitionList::new();
    for partition in partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, ANSWER_TIMEOUT)
        .unwrap_or_else(|error| panic!("cannot read committed offsets of `{topic}`: {error}"));
    partitions
        .iter()
        .map(|partition| {
            match committed
                .find_partition(topic, *partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            }
        })
        .collect()
}

/// Records not committed: per partition the end offset minus the committed one (or all of it).
fn lag(ends: &[i64], committed: &[Option<i64>]) -> i64 {
    ends.iter()
        .zip(committed)
        .map(|(end, committed)| (end - committed.unwrap_or(0)).max(0))
        .sum()
}
