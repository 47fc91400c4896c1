//! Interop with the seed's own Python client (`tests/python/seed_client.py`, aiokafka): the seed's
//! producer feeds our listener, and our template feeds the seed's consumer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{unique, Cluster, Recorder};
use kafka_runtime::prelude::*;
use kafka_runtime::KafkaTemplate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
    email: String,
    timestamp: String,
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
}

/// The venv's python, made (once) by the project's script.
fn python() -> PathBuf {
    python_env(Command::new(workspace().join("scripts/python-env.sh")))
}

fn python_env(mut script: Command) -> PathBuf {
    let output = script.output().expect("scripts/python-env.sh runs");
    assert!(
        output.status.success(),
        "scripts/python-env.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn seed_client(args: &[&str]) -> String {
    let output = Command::new(python())
        .arg(workspace().join("tests/python/seed_client.py"))
        .args(args)
        .output()
        .expect("the seed client runs");
    assert!(
        output.status.success(),
        "seed_client.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The tests of this binary (and of others) reach the venv on first use at the same time: a
/// fresh CI clone has none, so every concurrent first run must see a complete one.
#[test]
fn the_python_env_is_made_safely_by_concurrent_first_runs() {
    let venv = workspace().join("target").join(unique("venv-concurrent"));
    // Staggered, so that later runs find the venv half-made by the first (the failure CI saw).
    let runs: Vec<_> = (0..4u64)
        .map(|n| {
            let venv = venv.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(600 * n));
                let mut script = Command::new(workspace().join("scripts/python-env.sh"));
                script.env("PYTHON_VENV", &venv);
                python_env(script)
            })
        })
        .collect();
    for run in runs {
        let python = run.join().expect("the script's run finished");
        assert_eq!(python, venv.join("bin/python"));
        let import = Command::new(&python)
            .args(["-c", "import aiokafka"])
            .status()
            .expect("the venv's python runs");
        assert!(import.success(), "aiokafka is importable from {python:?}");
    }
    std::fs::remove_dir_all(&venv).expect("the test venv is removed");
    let _ = std::fs::remove_file(venv.with_extension("lock"));
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    key: String,
    user_id: String,
    correlation_id: Option<String>,
}

#[kafka_listener(
    id = "seed_events",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn seed_events(
    Payload(event): Payload<UserEvent>,
    Key(key): Key<String>,
    headers: Headers,
    ack: Ack,
    State(seen): State<Recorder<Seen>>,
) -> Result<(), HandlerError> {
    seen.push(Seen {
        key,
        user_id: event.user_id,
        correlation_id: headers.get_str("correlation_id").map(str::to_owned),
    });
    ack.acknowledge();
    Ok(())
}

#[kafka_listener(
    id = "seed_batches",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn seed_batches(
    Batch(events): Batch<UserEvent>,
    ack: BatchAck,
    State(seen): State<Recorder<Seen>>,
) -> Result<(), HandlerError> {
    for event in events {
        seen.push(Seen {
            key: event.key_str().unwrap_or_default().to_owned(),
            user_id: event.payload.user_id,
            correlation_id: event.headers.get_str("correlation_id").map(str::to_owned),
        });
    }
    ack.acknowledge();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_python_producer_feeds_our_listener_which_commits() {
    the_seeds_python_producer_feeds("seed_events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_python_producer_feeds_our_batch_listener_which_commits() {
    the_seeds_python_producer_feeds("seed_batches").await;
}

async fn the_seeds_python_producer_feeds(listener: &str) {
    let cluster = Cluster::start();
    let topic = cluster.topic("seed-to-rust", 1);
    let group = unique("seed-to-rust");
    let seen = Recorder::<Seen>::default();
    let app = cluster
        .application("")
        .with_listeners([listener])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts");

    let bootstrap = cluster.bootstrap().to_owned();
    let topic_arg = topic.clone();
    let sent = tokio::task::spawn_blocking(move || {
        seed_client(&["produce", &bootstrap, &topic_arg, "20"])
    })
    .await
    .expect("producer ran");
    assert_eq!(sent.lines().count(), 20, "{sent}");

    let seen = seen.wait_for(20).await;
    let expected: Vec<Seen> = (0..20)
        .map(|n| Seen {
            key: format!("user-{n}"),
            user_id: n.to_string(),
            correlation_id: Some(format!("corr-{n}")),
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        cluster.wait_committed(&group, &topic, &[Some(20)]).await,
        [Some(20)]
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_template_feeds_the_seeds_python_consumer() {
    let cluster = Cluster::start();
    let topic = cluster.topic("rust-to-seed", 1);
    let config = cluster.config("[kafka.producer]\nacks = \"all\"\ncompression-type = \"gzip\"\n");
    let template = KafkaTemplate::new(&config.kafka, cluster.bootstrap()).expect("template");
    for n in 0..5 {
        let event = UserEvent {
            event_type: "user_updated".into(),
            user_id: n.to_string(),
            email: format!("user{n}@example.com"),
            timestamp: "2026-11-28T00:00:00".into(),
        };
        template
            .record(&topic)
            .key(&format!("user-{n}"))
            .header("correlation_id", format!("corr-{n}"))
            .send(&event)
            .await
            .expect("delivered");
    }

    let bootstrap = cluster.bootstrap().to_owned();
    let group = unique("seed-consumer");
    let topic_arg = topic.clone();
    let output = tokio::task::spawn_blocking(move || {
        seed_client(&["consume", &bootstrap, &topic_arg, &group, "5"])
    })
    .await
    .expect("consumer ran");

    let values: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|line| line.strip_prefix("value "))
        .map(|json| serde_json::from_str(json).expect("JSON value line"))
        .collect();
    let records: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|line| line.strip_prefix("record "))
        .map(|json| serde_json::from_str(json).expect("JSON record line"))
        .collect();
    assert_eq!(values.len(), 5, "{output}");
    for (n, (value, record)) in values.iter().zip(&records).enumerate() {
        assert_eq!(value["event_type"], "user_updated");
        assert_eq!(value["user_id"], n.to_string());
        assert_eq!(record["key"], format!("user-{n}"));
        assert_eq!(record["headers"]["correlation_id"], format!("corr-{n}"));
    }
}

/// A key lands on the same partition whether the seed's Python producer (aiokafka, murmur2 like
/// the Java client) or our template sends it: per-key order holds in a fleet where both produce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lands_on_the_same_partition_from_the_seeds_producer_and_from_the_template() {
    const KEYS: usize = 1_000;
    let cluster = Cluster::start();
    let from_python = cluster.topic("keys-python", 6);
    let from_rust = cluster.topic("keys-rust", 6);

    let (bootstrap, topic) = (cluster.bootstrap().to_owned(), from_python.clone());
    let sent = tokio::task::spawn_blocking(move || {
        seed_client(&["produce", &bootstrap, &topic, &KEYS.to_string()])
    })
    .await
    .expect("producer ran");
    assert_eq!(sent.lines().count(), KEYS, "{sent}");
    let template =
        KafkaTemplate::new(&cluster.config("").kafka, cluster.bootstrap()).expect("template");
    let keyed = (0..KEYS).map(|n| (format!("user-{n}"), n));
    for sent in template.send_batch(&from_rust, keyed).await {
        sent.expect("delivered");
    }

    let partitions = |records: Vec<ConsumerRecord>| -> std::collections::BTreeMap<String, i32> {
        records
            .into_iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    r.partition,
                )
            })
            .collect()
    };
    let python = partitions(
        cluster
            .kit()
            .read(&from_python, KEYS, common::PATIENCE)
            .await,
    );
    let rust = partitions(cluster.kit().read(&from_rust, KEYS, common::PATIENCE).await);
    let differing: Vec<&String> = python
        .iter()
        .filter(|(key, partition)| rust.get(*key) != Some(partition))
        .map(|(key, _)| key)
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {KEYS} keys land on other partitions, e.g. {:?}",
        differing.len(),
        &differing[..differing.len().min(5)]
    );
}

/// Our request, answered by a replier on the seed's client library that copies the headers as
/// Spring's `@SendTo` does: the reply finds its caller by `kafka_correlationId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_requests_are_answered_by_a_python_replier_copying_springs_headers() {
    let cluster = Cluster::start();
    let requests = cluster.topic("py-requests", 1);
    let replies = unique("py-replies");
    let app = cluster
        .start_without_listeners(&format!("[kafka.template]\nreply-topic = \"{replies}\"\n"))
        .await;
    let (bootstrap, topic) = (cluster.bootstrap().to_owned(), requests.clone());
    let replier =
        tokio::task::spawn_blocking(move || seed_client(&["reply", &bootstrap, &topic, "3"]));
    let mut asked = tokio::task::JoinSet::new();
    for n in 0..3 {
        let (template, topic) = (app.template().clone(), requests.clone());
        asked.spawn(async move {
            let reply = template
                .record(&topic)
                .key(&format!("user-{n}"))
                .send_and_receive(
                    &serde_json::json!({ "n": n }),
                    std::time::Duration::from_secs(60),
                )
                .await
                .unwrap_or_else(|error| panic!("request {n}: {error}"));
            let answer: serde_json::Value =
                serde_json::from_slice(reply.value.as_deref().expect("a value")).expect("JSON");
            assert_eq!(
                answer,
                serde_json::json!({ "echo": { "n": n }, "by": "python" })
            );
            let key = format!("user-{n}");
            assert_eq!(reply.key.as_deref(), Some(key.as_bytes()));
        });
    }
    while let Some(done) = asked.join_next().await {
        done.expect("each request got its own reply");
    }
    let answered = replier.await.expect("the replier ran");
    assert_eq!(answered.lines().count(), 3, "{answered}");
    app.shutdown().await;
}
