//! The idempotent receiver (the seed's best practice 2): a listener with `dedupe` skips a record
//! whose id its application's [`IdempotencyStore`] says was processed, and remembers each id whose
//! handler succeeded.
//!
//! ```rust,ignore
//! #[kafka_listener(topics = "payments", group = "ledger", dedupe = "header:event_id")]
//! async fn book(Payload(payment): Payload<Payment>) -> Result<(), AppError> { /* ... */ }
//! ```
//!
//! The id is a header's value (`header:<name>`) or the record's key (`key`). A record without one
//! is handled as usual. Records skipped as duplicates are acknowledged without calling the
//! handler and counted in `kafka_listener_records_deduplicated_total`.
//!
//! What it guarantees depends on the store. The default, [`InMemoryIdempotencyStore`], keeps
//! the last ids of this process: it stops redeliveries after a rebalance or a failed commit, not
//! after a crash. A store that keeps its ids where the handler writes its effect (the same
//! database, in the same transaction) makes the effect happen once across crashes too.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

/// The future a store's methods return: `Box::pin(async move { ... })`.
pub use futures_util::future::BoxFuture;

use crate::listener::HandlerError;
use crate::record::RecordView;
use crate::sync::lock;

/// What a store's lookups fail with: any error, shown in the log and the retry's reason.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where a deduplicating listener's processed ids are kept (Spring Integration's
/// `MetadataStore` behind an `IdempotentReceiverInterceptor`). Register one with
/// [`KafkaApplication::with_idempotency_store`](crate::KafkaApplication::with_idempotency_store);
/// every deduplicating listener of the application uses it, each under its own id.
///
/// `seen` runs before the handler, `remember` after it returned `Ok`. A failed `seen` fails the
/// delivery (retried with the error handler's back-off: nothing is skipped on a guess); a
/// failed `remember` is logged (the handler's work is done; a redelivery may then run it again).
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Whether `listener` processed the record with `id`.
    fn seen<'a>(
        &'a self,
        listener: &'a str,
        id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Records that `listener` processed the record with `id`.
    fn remember<'a>(
        &'a self,
        listener: &'a str,
        id: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The default store: the last `capacity` ids (10,000 by default) of this process, per
/// application; the oldest are forgotten first.
pub struct InMemoryIdempotencyStore {
    capacity: usize,
    /// The ids held, and the order they came in.
    ids: Mutex<(HashSet<ListenerId>, VecDeque<ListenerId>)>,
}

/// An id, under its listener's.
type ListenerId = (String, Vec<u8>);

impl InMemoryIdempotencyStore {
    /// Keeps up to `capacity` ids (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        InMemoryIdempotencyStore {
            capacity: capacity.max(1),
            ids: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }
}

impl Default for InMemoryIdempotencyStore {
    fn default() -> Self {
        Self::with_capacity(10_000)
    }
}

impl fmt::Debug for InMemoryIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryIdempotencyStore")
            .field("capacity", &self.capacity)
            .field("held", &lock(&self.ids).1.len())
            .finish()
    }
}

impl IdempotencyStore for InMemoryIdempotencyStore {
    fn seen<'a>(
        &'a self,
        listener: &'a str,
        id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = (listener.to_owned(), id.to_vec());
        let seen = lock(&self.ids).0.contains(&key);
        Box::pin(std::future::ready(Ok(seen)))
    }

    fn remember<'a>(
        &'a self,
        listener: &'a str,
        id: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = (listener.to_owned(), id.to_vec());
        let mut ids = lock(&self.ids);
        let (set, order) = &mut *ids;
        if set.insert(key.clone()) {
            order.push_back(key);
            while order.len() > self.capacity {
                if let Some(oldest) = order.pop_front() {
                    set.remove(&oldest);
                }
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Where a listener's record ids come from (`dedupe = "header:<name>"` or `"key"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dedupe {
    Key,
    Header(String),
}

impl std::str::FromStr for Dedupe {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "key" => Ok(Dedupe::Key),
            other => match other.strip_prefix("header:").map(str::trim) {
                Some(name) if !name.is_empty() => Ok(Dedupe::Header(name.to_owned())),
                _ => Err(format!(
                    "`{text}` does not say where a record's id is; expected `key` or \
                     `header:<name>`"
                )),
            },
        }
    }
}

impl Dedupe {
    /// The id of `record`, when it has one.
    fn id_of(&self, record: &RecordView<'_>) -> Option<Vec<u8>> {
        match self {
            Dedupe::Key => record.key.map(<[u8]>::to_vec),
            Dedupe::Header(name) => record.last_header(name).map(<[u8]>::to_vec),
        }
    }
}

/// One record's check against the store: made before its handler runs, remembered after.
pub(crate) struct Screen {
    store: Arc<dyn IdempotencyStore>,
    listener: &'static str,
    id: Vec<u8>,
}

impl Screen {
    /// The check of `record` for `listener`, when the listener deduplicates and the record has
    /// an id.
    pub(crate) fn of(
        dedupe: Option<&Dedupe>,
        store: &Arc<dyn IdempotencyStore>,
        listener: &'static str,
        record: &RecordView<'_>,
    ) -> Option<Screen> {
        let id = dedupe?.id_of(record)?;
        Some(Screen {
            store: Arc::clone(store),
            listener,
            id,
        })
    }

    /// Whether the record was processed; a store that cannot say fails the delivery.
    pub(crate) async fn seen(&self) -> Result<bool, HandlerError> {
        self.store
            .seen(self.listener, &self.id)
            .await
            .map_err(|error| {
                HandlerError::new(format!(
                    "the idempotency store cannot say whether the record was processed: {error}"
                ))
            })
    }

    /// Remembers that the record was processed; a failure is logged.
    pub(crate) async fn remember(&self) {
        if let Err(error) = self.store.remember(self.listener, &self.id).await {
            tracing::warn!(
                listener = self.listener, %error,
                "the idempotency store did not remember a processed record; a redelivery of it \
                 would be handled again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_key_or_a_header() {
        assert_eq!("key".parse(), Ok(Dedupe::Key));
        assert_eq!(
            " header: event_id ".parse(),
            Ok(Dedupe::Header("event_id".to_owned()))
        );
        for wrong in ["", "header:", "value", "headers:x"] {
            assert!(wrong.parse::<Dedupe>().is_err(), "{wrong}");
        }
    }

    #[tokio::test]
    async fn the_in_memory_store_forgets_its_oldest_ids_first() {
        let store = InMemoryIdempotencyStore::with_capacity(2);
        for id in [b"a", b"b", b"c"] {
            store.remember("l", id).await.expect("remembered");
        }
        assert!(!store.seen("l", b"a").await.expect("answer"));
        assert!(store.seen("l", b"b").await.expect("answer"));
        assert!(store.seen("l", b"c").await.expect("answer"));
        assert!(
            !store.seen("other", b"c").await.expect("answer"),
            "per listener"
        );
    }
}
