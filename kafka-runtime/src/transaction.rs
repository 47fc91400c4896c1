//! Kafka transactions (Spring's `KafkaTransactionManager`): a transactional producer, and the
//! transaction the current task runs in, which the template's sends join.
//!
//! Listeners: each assigned partition has its own producer, `transactional.id =
//! <transaction-id-prefix><group>.<topic>.<partition>`. The next owner of a partition (this
//! instance after a restart, or another one after a rebalance) initializes a producer with the
//! same id, which fences the previous owner and aborts its open transaction at once; the
//! offsets also go to the transaction with the consumer's group metadata (KIP-447), so a
//! member that lost its generation cannot commit either. See the README ("Replies and
//! transactions") for why ids per partition rather than KIP-447's one producer per consumer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::TopicPartitionList;
use tokio::task::futures::TaskLocalFuture;

use crate::config::{client, Properties};

/// How long a transaction's round trips (init, commit, abort) may take.
const ROUND_TRIP: Duration = Duration::from_secs(30);

tokio::task_local! {
    /// The transaction the current task's sends join.
    static CURRENT: Arc<TransactionalProducer>;
}

/// A failed transaction step.
#[derive(Debug, thiserror::Error)]
#[error("transaction of `{id}`: cannot {step}: {source}")]
pub struct TransactionError {
    id: String,
    step: &'static str,
    source: KafkaError,
}

impl TransactionError {
    /// Whether the producer cannot go on (fenced by a newer producer with its id, or broken):
    /// a new one must be made.
    pub fn is_fatal(&self) -> bool {
        match &self.source {
            KafkaError::Transaction(error) => error.is_fatal(),
            _ => false,
        }
    }
}

/// A producer with a `transactional.id`, initialized.
pub(crate) struct TransactionalProducer {
    id: String,
    producer: FutureProducer,
}

impl TransactionalProducer {
    /// Creates the producer with `properties` and `transactional.id = id`, and initializes it
    /// (fencing an earlier producer with the id), on a blocking thread.
    pub(crate) async fn start(
        properties: &Properties,
        id: String,
    ) -> Result<Arc<Self>, TransactionError> {
        let mut properties = properties.clone();
        properties.insert("transactional.id".to_owned(), id.clone());
        let fail = |step| {
            let id = id.clone();
            move |source| TransactionError { id, step, source }
        };
        let producer: FutureProducer = client::client_config(&properties)
            .create()
            .map_err(fail("create its producer"))?;
        let producer = Arc::new(TransactionalProducer {
            id: id.clone(),
            producer,
        });
        let started = Arc::clone(&producer);
        blocking(move || started.producer.init_transactions(ROUND_TRIP))
            .await
            .map_err(fail("initialize"))?;
        Ok(producer)
    }

    /// The producer, for the sends of its transaction.
    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Begins a transaction (no broker round trip).
    pub(crate) fn begin(&self) -> Result<(), TransactionError> {
        self.producer
            .begin_transaction()
            .map_err(|source| self.error("begin", source))
    }

    /// Commits the transaction, with `offsets` consumed by `group` when given; on a blocking
    /// thread.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        offsets: Option<(TopicPartitionList, ConsumerGroupMetadata)>,
    ) -> Result<(), TransactionError> {
        if let Some((offsets, group)) = offsets {
            let this = Arc::clone(self);
            blocking(move || {
                this.producer
                    .send_offsets_to_transaction(&offsets, &group, ROUND_TRIP)
            })
            .await
            .map_err(|source| self.error("send offsets to", source))?;
        }
        let this = Arc::clone(self);
        blocking(move || this.producer.commit_transaction(ROUND_TRIP))
            .await
            .map_err(|source| self.error("commit", source))
    }

    /// Aborts the transaction: nothing sent in it becomes visible to `read_committed` readers.
    pub(crate) async fn abort(self: &Arc<Self>) -> Result<(), TransactionError> {
        let this = Arc::clone(self);
        blocking(move || this.producer.abort_transaction(ROUND_TRIP))
            .await
            .map_err(|source| self.error("abort", source))
    }

    fn error(&self, step: &'static str, source: KafkaError) -> TransactionError {
        TransactionError {
            id: self.id.clone(),
            step,
            source,
        }
    }
}

/// Runs `future` in the transaction of `producer`: the template's sends join it.
pub(crate) fn scope<F: Future>(
    producer: Arc<TransactionalProducer>,
    future: F,
) -> TaskLocalFuture<Arc<TransactionalProducer>, F> {
    CURRENT.scope(producer, future)
}

/// The transaction the current task runs in, if any.
pub(crate) fn current() -> Option<Arc<TransactionalProducer>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Runs a broker round trip off the tokio workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}
