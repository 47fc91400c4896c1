//! Parallelism inside a partition (`ordering = "key"` / `"none"`, `listener.max-parallel`): records
//! of one key in offset order and never two at once, different keys at the same time up to the
//! bound, a failing record holding back its own key only, and commits that never pass a record
//! that is not done.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{produce_all, unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;

/// What the handlers saw: (key, value, start, end), how many ran at once at most, and how many
/// more times each value fails.
#[derive(Clone, Default)]
struct Log {
    handled: Recorder<(String, String, Instant, Instant)>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    failures: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Log {
    async fn handle(&self, key: String, value: String) -> Result<(), HandlerError> {
        let started = Instant::now();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // A different, repeatable handling time per record: 0-10 ms.
        let n: u64 = value.bytes().map(u64::from).sum();
        tokio::time::sleep(Duration::from_millis(n * 7919 % 11)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.handled
            .push((key, value.clone(), started, Instant::now()));
        let fails = self
            .failures
            .lock()
            .map(|mut failures| match failures.get_mut(&value) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            })
            .unwrap_or(false);
        if fails {
            return Err(HandlerError::new(format!("{value} failed")));
        }
        Ok(())
    }

    async fn wait_for(&self, count: usize) -> Vec<(String, String, Instant, Instant)> {
        let deadline = Instant::now() + PATIENCE;
        while self.handled.len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.handled.snapshot()
    }
}

#[kafka_listener(
    id = "by_key",
    topics = "${topic}",
    group = "${group}",
    ordering = "key",
    auto_startup = false
)]
async fn by_key(
    key: Option<Key<String>>,
    Payload(value): Payload<String>,
    State(log): State<Log>,
) -> Result<(), HandlerError> {
    let key = key.map_or_else(|| "-".to_owned(), |Key(key)| key);
    log.handle(key, value).await
}

#[kafka_listener(
    id = "unordered",
    topics = "${topic}",
    group = "${group}",
    ordering = "none",
    auto_startup = false
)]
async fn unordered(
    Payload(value): Payload<String>,
    State(log): State<Log>,
) -> Result<(), HandlerError> {
    log.handle(String::new(), value).await
}

/// For each key, its records in the order they were handled; asserts that no two ran at once.
fn per_key(handled: &[(String, String, Instant, Instant)]) -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<(Instant, Instant, String)>> = BTreeMap::new();
    for (key, value, start, end) in handled {
        by_key
            .entry(key.clone())
            .or_default()
            .push((*start, *end, value.clone()));
    }
    by_key
        .into_iter()
        .map(|(key, mut runs)| {
            runs.sort_by_key(|(start, _, _)| *start);
            for pair in runs.windows(2) {
                assert!(
                    pair[1].0 >= pair[0].1,
                    "two records of key {key} ran at once: {} and {}",
                    pair[0].2,
                    pair[1].2
                );
            }
            (key, runs.into_iter().map(|(_, _, value)| value).collect())
        })
        .collect()
}

const PARALLEL: &str = "[kafka.listener]\nmax-parallel = 8\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_key_stay_in_order_while_keys_run_in_parallel() {
    let cluster = Cluster::start();
    let topic = cluster.topic("bykey", 1);
    let group = unique("bykey");
    // 20 keys x 20 records, interleaved, on one partition; then 10 records without a key.
    let keyed = (0..400).map(|n| (format!("k{}", n % 20), format!("k{}-{:02}", n % 20, n / 20)));
    produce_all(cluster.bootstrap(), &topic, keyed);
    common::produce_spread(cluster.bootstrap(), &topic, 1, 10);
    let log = Log::default();
    let app = cluster
        .start_listener(PARALLEL, "by_key", (&topic, &group), log.clone())
        .await;
    let handled = log.wait_for(410).await;
    assert_eq!(handled.len(), 410, "each record once");
    for (key, values) in per_key(&handled) {
        let mut sorted = values.clone();
        sorted.sort_by_key(|value| {
            value
                .trim_start_matches('v')
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
        });
        assert_eq!(values, sorted, "key {key} in offset order");
    }
    let most = log.most.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&most),
        "keys ran in parallel, up to max-parallel: {most} at once"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(410)]).await,
        [Some(410)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_record_holds_back_its_own_key_only() {
    let cluster = Cluster::start();
    let topic = cluster.topic("holdskey", 1);
    let group = unique("holdskey");
    let mut records = vec![
        ("a".to_owned(), "a0".to_owned()),
        ("a".to_owned(), "a1".to_owned()),
        ("a".to_owned(), "a2".to_owned()),
    ];
    records.extend((0..10).map(|n| ("b".to_owned(), format!("b{n}"))));
    produce_all(cluster.bootstrap(), &topic, records);
    let log = Log::default();
    if let Ok(mut failures) = log.failures.lock() {
        failures.insert("a1".to_owned(), 2);
    }
    let extra = "[kafka.listener]\nmax-parallel = 4\n\
                 [kafka.listener.error-handler]\ninterval = \"400ms\"\n";
    let app = cluster
        .start_listener(extra, "by_key", (&topic, &group), log.clone())
        .await;
    let handled = log.wait_for(15).await;
    let keys = per_key(&handled);
    assert_eq!(keys["a"], ["a0", "a1", "a1", "a1", "a2"], "a2 waits for a1");
    assert_eq!(keys["b"].len(), 10);
    let end_of = |value: &str| {
        handled
            .iter()
            .filter(|(_, v, _, _)| v == value)
            .map(|(_, _, _, end)| *end)
            .max()
            .expect("handled")
    };
    assert!(
        end_of("b9") < end_of("a1"),
        "b's records did not wait for a1's retries"
    );
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(13)]).await,
        [Some(13)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_records_run_in_parallel_and_all_commit() {
    let cluster = Cluster::start();
    let topic = cluster.topic("unordered", 1);
    let group = unique("unordered");
    common::produce_spread(cluster.bootstrap(), &topic, 1, 200);
    let log = Log::default();
    let app = cluster
        .start_listener(PARALLEL, "unordered", (&topic, &group), log.clone())
        .await;
    let handled = log.wait_for(200).await;
    assert_eq!(handled.len(), 200);
    let most = log.most.load(Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} at once");
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(200)]).await,
        [Some(200)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_parallel_bounds_the_consumer_not_each_partition() {
    let cluster = Cluster::start();
    let topic = cluster.topic("slots", 3);
    let group = unique("slots");
    common::produce_spread(cluster.bootstrap(), &topic, 3, 600);
    let log = Log::default();
    let extra = "[kafka.listener]\nmax-parallel = 4\n";
    let app = cluster
        .start_listener(extra, "unordered", (&topic, &group), log.clone())
        .await;
    let handled = log.wait_for(600).await;
    assert_eq!(handled.len(), 600);
    let most = log.most.load(Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "three partitions share the consumer's 4 slots: {most} at once"
    );
    assert_eq!(
        cluster
            .wait_committed(&group, &topic, &[Some(200), Some(200), Some(200)])
            .await,
        [Some(200), Some(200), Some(200)]
    );
    app.shutdown().await;
}

/// Hands its token to another task, which nacks the first delivery while the handler still runs.
#[kafka_listener(
    id = "nacks_elsewhere",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    ordering = "key",
    auto_startup = false
)]
async fn nacks_elsewhere(
    ack: Ack,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(attempts): State<Recorder<u32>>,
) {
    attempts.push(attempt);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if attempt == 1 {
            ack.nack(Duration::from_millis(100));
        } else {
            ack.acknowledge();
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_from_another_task_while_the_handler_runs_delivers_again() {
    let cluster = Cluster::start();
    let topic = cluster.topic("nackelsewhere", 1);
    let group = unique("nackelsewhere");
    produce_all(
        cluster.bootstrap(),
        &topic,
        [("k".to_owned(), "v".to_owned())],
    );
    let attempts = Recorder::<u32>::default();
    let app = cluster
        .start_listener("", "nacks_elsewhere", (&topic, &group), attempts.clone())
        .await;
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(1)]).await,
        [Some(1)],
        "delivered again after the nack, then acknowledged: {:?}",
        attempts.snapshot()
    );
    assert_eq!(attempts.snapshot(), [1, 2]);
    app.shutdown().await;
}
