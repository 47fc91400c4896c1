//! Scale-out across processes: three OS processes of the `user-events` example in one group on a
//! six-partition topic split the partitions; stopping one hands its partitions to the others; no
//! record is lost (every unique key is handled at least once).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{unique, Cluster};
use kafka_runtime::KafkaTemplate;

const PATIENCE: Duration = Duration::from_secs(90);

/// One running service process and the log lines it printed.
struct Service {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn spawn(workdir: &Path, bootstrap: &str, topic: &str, group: &str) -> Service {
        let mut child = Command::new(common::example_binary())
            .current_dir(workdir)
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("USER_EVENTS_TOPIC", topic)
            .env("USER_EVENTS_GROUP", group)
            .env("RUST_LOG", "info,librdkafka=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("service starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        Service { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// Partitions held now, from the last "partitions assigned"/"partitions revoked" line.
    fn partitions(&self, topic: &str) -> usize {
        self.lines()
            .iter()
            .rev()
            .find(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
            .filter(|l| l.contains("partitions assigned"))
            .map(|l| l.matches(&format!("{topic}-")).count())
            .unwrap_or(0)
    }

    /// The keys of the records it handled.
    fn handled(&self) -> BTreeSet<String> {
        self.lines()
            .iter()
            .filter(|l| l.contains("Processing event"))
            .filter_map(|l| {
                l.split("key=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
            .collect()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        self.child.wait().expect("service exits")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn produce(
    template: &KafkaTemplate,
    topic: &str,
    ids: std::ops::Range<u32>,
) -> BTreeSet<String> {
    let items = ids.map(|n| {
        let event = serde_json::json!({"event_type": "user_created", "user_id": n.to_string()});
        (format!("id-{n}"), event)
    });
    let results = template
        .send_batch(topic, items.clone().collect::<Vec<_>>())
        .await;
    assert!(results.iter().all(Result::is_ok), "every record delivered");
    items.map(|(key, _)| key).collect()
}

fn sorted(counts: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut counts: Vec<usize> = counts.collect();
    counts.sort_unstable();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_split_six_partitions_and_take_over_when_one_stops() {
    let cluster = Cluster::start();
    let topic = cluster.topic("scale-out", 6);
    let group = unique("scale-out");
    let workdir = std::env::temp_dir().join(unique("scale-out"));
    std::fs::create_dir_all(&workdir).expect("work dir");
    // The mock cluster makes a rejoin wait out the group's session timeout (see listener.rs).
    std::fs::write(
        workdir.join("application.toml"),
        "[kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n",
    )
    .expect("application.toml");

    let mut services: Vec<Service> = (0..3)
        .map(|_| Service::spawn(&workdir, cluster.bootstrap(), &topic, &group))
        .collect();
    wait_for("2 partitions for each of 3 processes", || {
        sorted(services.iter().map(|s| s.partitions(&topic))) == [2, 2, 2]
    })
    .await;

    let config = cluster.config("");
    let template = KafkaTemplate::new(&config.kafka, cluster.bootstrap()).expect("template");
    let mut expected = produce(&template, &topic, 0..600).await;
    wait_for("the first 600 records", || {
        let handled: BTreeSet<String> = services.iter().flat_map(Service::handled).collect();
        expected.is_subset(&handled)
    })
    .await;
    assert!(
        services.iter().all(|s| !s.handled().is_empty()),
        "every process handled records"
    );

    let stopped = services.pop().expect("three services");
    let stopped_handled = stopped.handled();
    assert!(stopped.stop().success(), "a stopped service exits 0");
    wait_for("3 partitions for each of the 2 remaining processes", || {
        sorted(services.iter().map(|s| s.partitions(&topic))) == [3, 3]
    })
    .await;

    expected.extend(produce(&template, &topic, 600..1200).await);
    wait_for("all 1200 records", || {
        let mut handled: BTreeSet<String> = services.iter().flat_map(Service::handled).collect();
        handled.extend(stopped_handled.iter().cloned());
        expected.is_subset(&handled)
    })
    .await;
    for service in services {
        assert!(service.stop().success(), "services exit 0");
    }
}
