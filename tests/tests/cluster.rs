//! A three-broker cluster failing under a live group: partition leaders move, a broker goes down
//! and comes back, the group's coordinator moves, while a listener drains a backlog and the
//! template sends with `acks=all` and idempotence. Embedded only (tansu runs one broker).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::{unique, Recorder};
use kafka_runtime::prelude::*;
use kafka_runtime::test::TestKafka;

const PARTITIONS: i32 = 6;
const BACKLOG: usize = 20_000;
const SENT: usize = 5_000;

#[kafka_listener(
    id = "replicated",
    topics = "${topic}",
    group = "${group}",
    concurrency = 2,
    auto_startup = false
)]
async fn replicated(
    Payload(id): Payload<String>,
    meta: Metadata,
    State(seen): State<Recorder<(i32, i64, String)>>,
) {
    // A handler with some work to do: the backlog drains while the faults happen.
    tokio::time::sleep(Duration::from_millis(1)).await;
    seen.push((meta.partition, meta.offset, id));
}

fn distinct(seen: &Recorder<(i32, i64, String)>) -> usize {
    let values: HashSet<String> = seen.snapshot().into_iter().map(|(_, _, id)| id).collect();
    values.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_moving_and_a_broker_down_under_a_live_group_lose_nothing() {
    common::init_logging();
    let kafka = TestKafka::start_cluster(3);
    let (topic, group) = (unique("replicated"), unique("replicated"));
    kafka.create_topic(&topic, PARTITIONS);
    // The coordinator is on the broker that will fail.
    kafka.faults().move_coordinator(&group, 2);
    common::produce_all(
        kafka.bootstrap_servers(),
        &topic,
        (0..BACKLOG).map(|n| (format!("key-{}", n % 97), format!("id-{n}"))),
    );
    let seen = Recorder::<(i32, i64, String)>::default();
    let app = kafka
        .application(
            "[kafka.producer]\nacks = \"all\"\n\
             [kafka.producer.properties]\n\"enable.idempotence\" = true\n\
             [kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n",
        )
        .with_listeners(["replicated"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .start()
        .await
        .expect("application starts");

    // The template sends meanwhile, in pipelined batches.
    let template = app.template().clone();
    let sending = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let mut failed = 0;
            for chunk in (BACKLOG..BACKLOG + SENT).collect::<Vec<_>>().chunks(250) {
                let items = chunk
                    .iter()
                    .map(|n| (format!("key-{}", n % 97), format!("id-{n}")));
                let results = template.send_batch(&topic, items).await;
                failed += results.iter().filter(|result| result.is_err()).count();
            }
            failed
        })
    };

    // Faults, one every 250 ms, while records flow.
    let faults = kafka.faults();
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut back_at = None;
    for step in 0..24 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let partition = step % PARTITIONS;
        match step {
            4 => {
                faults.take_broker_down(2);
                timeline.push(format!("{:?} broker 2 down", started.elapsed()));
            }
            6 => {
                // The controller's elections: broker 2's partitions and its group move away.
                for partition in 0..PARTITIONS {
                    faults.move_leader(&topic, partition, 1 + partition % 2 * 2);
                }
                faults.move_coordinator(&group, 3);
                timeline.push(format!(
                    "{:?} leaders and coordinator moved off 2",
                    started.elapsed()
                ));
            }
            14 => {
                faults.bring_broker_up(2);
                back_at = Some(Instant::now());
                timeline.push(format!("{:?} broker 2 up", started.elapsed()));
            }
            _ => faults.move_leader(&topic, partition, 1 + (step % 3)),
        }
    }
    let faults_ended = Instant::now();

    let failed_sends = sending.await.expect("sender");
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct(&seen) < BACKLOG + SENT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = faults_ended.elapsed();
    let report = app.shutdown().await;

    let all = seen.snapshot();
    let values: HashSet<&str> = all.iter().map(|(_, _, id)| id.as_str()).collect();
    let lost: Vec<String> = (0..BACKLOG + SENT)
        .map(|n| format!("id-{n}"))
        .filter(|id| !values.contains(id.as_str()))
        .collect();
    // Consumer duplicates: the same offset handled again (a redelivery).
    let mut per_offset: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (partition, offset, _) in &all {
        *per_offset.entry((*partition, *offset)).or_default() += 1;
    }
    let redelivered = all.len() - per_offset.len();
    let in_log: i64 = kafka.end_offsets(&topic).await.iter().sum();
    let committed: i64 = kafka
        .committed(&group, &topic)
        .await
        .iter()
        .map(|offset| offset.unwrap_or(0))
        .sum();
    eprintln!(
        "3 brokers: {} records, {} lost, {redelivered} redelivered, {failed_sends} sends failed, \
         {in_log} in the log, {committed} committed; drained {drained:?} after the faults, \
         {:?} after broker 2 was back; {timeline:?}",
        BACKLOG + SENT,
        lost.len(),
        back_at.map(|at| at.elapsed())
    );
    assert!(
        lost.is_empty(),
        "lost {}: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(failed_sends, 0, "every send succeeded in the end");
    assert_eq!(
        in_log,
        (BACKLOG + SENT) as i64,
        "the idempotent producer wrote each record once"
    );
    assert_eq!(committed, (BACKLOG + SENT) as i64, "everything committed");
    assert!(report.is_clean(), "{report:?}");
    // Redeliveries come only from what was uncommitted when a partition moved between members:
    // at most max-in-flight (1,000) per partition and rebalance.
    assert!(
        redelivered <= 1_000 * PARTITIONS as usize,
        "{redelivered} redeliveries"
    );
}
