//! Seeks the application asks for (`ListenerHandle::seek`): the partition reads from another
//! position, and its tracker stays consistent: what was acknowledged before the seek is
//! committed as it would have been, and nothing skipped is committed before a record after it
//! is acknowledged.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{after, Hold, PartitionTask, RECOVERY_RETRY_MIN};
use crate::control::SeekTo;

/// How long a broker may take to answer where a seek goes (the beginning, the end, a time).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

impl<C: ConsumerContext + 'static> PartitionTask<C> {
    /// Moves the partition to `to`. Backwards, the records handed out from there on are read
    /// again (their acknowledgments, if any come, are from an earlier delivery and settle
    /// nothing); forwards, the records in between are skipped and those handed out before stay
    /// tracked until acknowledged. A failure waiting for its retry is dropped with the position
    /// it was at.
    pub(super) async fn seek_to(&mut self, to: SeekTo) {
        let consumer = Arc::clone(&self.setup.consumer);
        let (topic, partition) = (self.setup.topic.to_string(), self.setup.partition);
        let Some(offset) = resolve(consumer, (topic, partition), to, self.setup.spec.id).await
        else {
            return;
        };
        let spec = &self.setup.spec;
        tracing::info!(
            listener = spec.id, topic = %self.setup.topic, partition = self.setup.partition,
            ?to, offset, "seeking"
        );
        self.hold = None;
        self.failure = None;
        let backward = self
            .tracker
            .position()
            .is_none_or(|position| offset < position);
        if backward {
            self.tracker.rewind(offset);
        } else {
            self.tracker.skip_to(offset);
        }
        if !self.seek(offset) {
            // Reading on would read from the old position: stay paused and try again.
            self.pause(true);
            self.hold = Some(Hold {
                until: after(RECOVERY_RETRY_MIN),
                seek: Some(offset),
                redeliver: None,
            });
        } else if !self.paused_by_application() {
            self.pause(false);
        }
    }

    /// A seek of a partition read in key lanes: not supported, said so.
    pub(super) fn refuse_seek(&self, to: SeekTo) {
        tracing::warn!(
            listener = self.setup.spec.id, topic = %self.setup.topic,
            partition = self.setup.partition, ?to,
            "seek ignored: a listener with ordering `key` or `none` cannot seek"
        );
    }
}

/// The offset `to` names in `topic`-`partition`, asking the broker on a blocking thread when it
/// is not one already; `None` (logged) when there is none.
async fn resolve<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    (topic, partition): (String, i32),
    to: SeekTo,
    listener: &'static str,
) -> Option<i64> {
    let resolved = tokio::task::spawn_blocking(move || -> KafkaResult<i64> {
        let watermarks = || consumer.fetch_watermarks(&topic, partition, RESOLVE_TIMEOUT);
        match to {
            SeekTo::Offset(offset) => Ok(offset),
            SeekTo::Beginning => watermarks().map(|(low, _)| low),
            SeekTo::End => watermarks().map(|(_, high)| high),
            SeekTo::Timestamp(millis) => {
                let mut wanted = TopicPartitionList::new();
                wanted.add_partition_offset(&topic, partition, Offset::Offset(millis))?;
                let found = consumer.offsets_for_times(wanted, RESOLVE_TIMEOUT)?;
                match found.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Ok(offset),
                    // No record at or after that time: the end.
                    _ => watermarks().map(|(_, high)| high),
                }
            }
        }
    })
    .await;
    match resolved {
        Ok(Ok(offset)) if offset >= 0 => Some(offset),
        Ok(Ok(offset)) => {
            tracing::warn!(listener, ?to, offset, "seek ignored: no such offset");
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(listener, ?to, %error, "seek ignored: the broker did not say where");
            None
        }
        Err(_) => None,
    }
}
