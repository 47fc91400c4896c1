//! The idempotent receiver: a listener with `dedupe` skips records whose id its application's
//! store says was processed, remembers the ids it processes, and guesses nothing when the store
//! cannot answer.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{http_get, metric, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::dedupe::{BoxFuture, StoreError};
use kafka_runtime::prelude::*;
use kafka_runtime::IdempotencyStore;

#[kafka_listener(
    id = "deduplicating",
    topics = "${topic}",
    group = "${group}",
    dedupe = "header:event_id",
    auto_startup = false
)]
async fn deduplicating(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

#[kafka_listener(
    id = "deduplicating-by-key",
    topics = "${topic}",
    group = "${group}",
    dedupe = "key",
    ack_mode = "manual",
    auto_startup = false
)]
async fn deduplicating_by_key(
    Payload(text): Payload<String>,
    ack: Ack,
    State(seen): State<Recorder<String>>,
) {
    seen.push(text);
    ack.acknowledge();
}

/// Sends `text` with the header `event_id` (when given).
async fn send(cluster: &Cluster, topic: &str, event_id: Option<&str>, text: &str) {
    let record = cluster.kit().record(topic);
    match event_id {
        Some(id) => record.header("event_id", id).text(text).await,
        None => record.text(text).await,
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_id_was_processed_is_committed_without_calling_the_handler() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("dedupe", 1), unique("dedupe"));
    let seen = Recorder::<String>::default();
    let app = cluster
        .start_listener(
            "[management]\nport = 0\n",
            "deduplicating",
            (&topic, &group),
            seen.clone(),
        )
        .await;
    app.listener("deduplicating")
        .expect("listener")
        .start()
        .await
        .expect("starts");
    for (id, text) in [
        (Some("a"), "first a"),
        (Some("b"), "b"),
        (Some("a"), "second a"),
        (None, "no id"),
        (None, "no id"),
        (Some("c"), "c"),
    ] {
        send(&cluster, &topic, id, text).await;
    }
    let kafka = cluster.kit();
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, [Some(6)]);
    // Records without an id are handled as usual.
    assert_eq!(seen.snapshot(), ["first a", "b", "no id", "no id", "c"]);
    let address = app.management_address().expect("management endpoint");
    let (_, exposition) = http_get(address, "/metrics").await;
    let labels = [("listener", "deduplicating"), ("topic", topic.as_str())];
    assert_eq!(
        metric(
            &exposition,
            "kafka_listener_records_deduplicated_total",
            &labels
        ),
        Some(1.0),
        "{exposition}"
    );
    assert!(app.shutdown().await.is_clean());
}

/// A store that lives elsewhere (a database, Redis): here ids it knows from the start, and a
/// number of lookups that fail first.
#[derive(Clone, Default)]
struct SharedStore {
    ids: Arc<Mutex<HashSet<Vec<u8>>>>,
    failures: Arc<AtomicUsize>,
}

impl IdempotencyStore for SharedStore {
    fn seen<'a>(
        &'a self,
        listener: &'a str,
        id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            assert_eq!(listener, "deduplicating-by-key");
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err("the store is down".into());
            }
            Ok(self.ids.lock().expect("ids").contains(id))
        })
    }

    fn remember<'a>(&'a self, _: &'a str, id: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.ids.lock().expect("ids").insert(id.to_vec());
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_application_decides_and_a_failing_one_delays_rather_than_skips() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("dedupe-store", 1), unique("dedupe-store"));
    // Processed by an earlier run of the service, say.
    let store = SharedStore::default();
    store.ids.lock().expect("ids").insert(b"k1".to_vec());
    store.failures.store(2, Ordering::SeqCst);
    let seen = Recorder::<String>::default();
    let app = cluster
        .application("")
        .with_listeners(["deduplicating-by-key"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .with_idempotency_store(store.clone())
        .start()
        .await
        .expect("application starts");
    app.listener("deduplicating-by-key")
        .expect("listener")
        .start()
        .await
        .expect("starts");
    let kafka = cluster.kit();
    for (key, text) in [
        ("k0", "k0"),
        ("k1", "k1 again"),
        ("k2", "k2"),
        ("k0", "k0 again"),
    ] {
        kafka.record(&topic).key(key).text(text).await;
    }
    kafka.wait_committed(&group, &topic, PATIENCE).await;
    assert_eq!(kafka.committed(&group, &topic).await, [Some(4)]);
    // The first record's lookups failed twice: it was delivered again, not skipped.
    assert_eq!(seen.snapshot(), ["k0", "k2"]);
    assert_eq!(store.failures.load(Ordering::SeqCst), 0);
    let remembered = store.ids.lock().expect("ids").clone();
    assert_eq!(
        remembered,
        HashSet::from([b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec()])
    );
    assert!(app.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_is_refused_where_it_cannot_hold() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("dedupe-refused", 1), unique("dedupe-refused"));
    let cases = [
        (
            "[kafka.listeners.deduplicating]\ndedupe = \"value\"\n",
            "kafka.listeners.\"deduplicating\".dedupe: `value` does not say where a record's id is",
        ),
        (
            "[kafka.producer]\ntransaction-id-prefix = \"tx-\"\n",
            "`dedupe` (the idempotent receiver) is for record listeners outside transactions",
        ),
    ];
    for (extra, expected) in cases {
        let error = cluster
            .application(extra)
            .with_listeners(["deduplicating"])
            .with_property("topic", &topic)
            .with_property("group", &group)
            .with_state(Recorder::<String>::default())
            .start()
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
}
