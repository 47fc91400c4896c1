//! The example service as operations run it: a child process on the test's cluster, logging
//! JSON, stopped with SIGTERM in the middle of a backlog.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Cluster;

const RECORDS: usize = 20_000;
const PARTITIONS: i32 = 3;

/// A handled record, from the JSON log line of the example's handler.
fn handled(line: &serde_json::Value) -> Option<(i32, i64)> {
    if line["fields"]["message"] != "Processing event" {
        return None;
    }
    let record = &line["record"];
    let partition = i32::try_from(record["partition"].as_i64()?).ok()?;
    Some((partition, record["offset"].as_i64()?))
}

#[test]
fn sigterm_mid_stream_commits_exactly_what_was_acknowledged_and_exits_0() {
    let cluster = Cluster::start();
    let topic = cluster.topic("sigterm", PARTITIONS);
    let group = common::unique("sigterm-group");
    common::produce_all(
        cluster.bootstrap(),
        &topic,
        (0..RECORDS).map(|n| {
            (
                format!("user-{}", n % 100),
                format!(r#"{{"event_type":"user_updated","user_id":"{n}"}}"#),
            )
        }),
    );

    let mut child = Command::new(common::example_binary())
        .env("KAFKA_BOOTSTRAP_SERVERS", cluster.bootstrap())
        .env("USER_EVENTS_TOPIC", &topic)
        .env("USER_EVENTS_GROUP", &group)
        .env("KAFKA_LISTENER_CONCURRENCY", "1")
        .env("LOGGING_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("example starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count < 300 && Instant::now() < deadline {
        let Ok(line) = received.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|error| {
            panic!("logging.format = json writes JSON lines ({error}): {line}")
        });
        if let Some((partition, offset)) = handled(&json) {
            seen.entry(partition).or_default().push(offset);
            count += 1;
        }
    }
    assert!(count >= 300, "the service handles records: {count} in 60 s");
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let status = child.wait().expect("the service exits");
    reader.join().expect("stdout reader");
    // Handlers running at the signal finish and log too.
    for line in received.try_iter() {
        if let Some((partition, offset)) =
            serde_json::from_str(&line).ok().as_ref().and_then(handled)
        {
            seen.entry(partition).or_default().push(offset);
            count += 1;
        }
    }
    assert!(status.success(), "exits 0 on SIGTERM, got {status}");
    assert!(
        count < RECORDS,
        "SIGTERM came in the middle of the backlog ({count} of {RECORDS} handled)"
    );

    // Every handled record was acknowledged (the handler acknowledges what it logs), each
    // partition in offset order from 0: the committed offset is one past the last one handled.
    let expected: Vec<Option<i64>> = (0..PARTITIONS)
        .map(|partition| {
            let offsets = seen.get(&partition)?;
            let last = *offsets.iter().max()?;
            let mut distinct = offsets.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(
                distinct,
                (0..=last).collect::<Vec<_>>(),
                "partition {partition} was handled in order from its start"
            );
            Some(last + 1)
        })
        .collect();
    let committed = cluster.committed(&group, &topic, PARTITIONS);
    assert_eq!(
        committed, expected,
        "committed offsets (read by a separate client) = what was acknowledged"
    );
}
