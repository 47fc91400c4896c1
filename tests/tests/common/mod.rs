//! Helpers shared by the integration tests: a cluster per test, unique names, a reader of
//! committed offsets that is independent of the code under test, and polling waits.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_runtime::test::TestKafka;
use kafka_runtime::{Config, EmbeddedKafka};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

/// How long a test waits for something that normally takes milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The Kafka cluster a test runs against: the kit's [`TestKafka`] from the environment, i.e. a
/// fresh embedded mock cluster, or the real broker at `KAFKA_BOOTSTRAP_SERVERS` (what
/// `scripts/test.sh` starts for its second pass).
pub struct Cluster {
    kafka: TestKafka,
}

impl Cluster {
    pub fn start() -> Self {
        init_logging();
        let cluster = Cluster {
            kafka: TestKafka::from_env(),
        };
        // Shown with the test's output when it fails.
        eprintln!("backend: {}", cluster.describe());
        cluster
    }

    /// The real broker at `bootstrap` (one a test started itself).
    pub fn external(bootstrap: &str) -> Self {
        init_logging();
        Cluster {
            kafka: TestKafka::connect(bootstrap),
        }
    }

    /// The kit's view of the cluster: producing, reading back, dead letters, faults.
    pub fn kit(&self) -> &TestKafka {
        &self.kafka
    }

    pub fn describe(&self) -> String {
        match self.kafka.embedded() {
            Some(embedded) => format!("embedded mock cluster at {}", embedded.bootstrap_servers()),
            None => format!("external broker at {}", self.kafka.bootstrap_servers()),
        }
    }

    pub fn bootstrap(&self) -> &str {
        self.kafka.bootstrap_servers()
    }

    /// The embedded cluster, for tests that inject faults through the mock; `None` on a real broker.
    pub fn embedded(&self) -> Option<&EmbeddedKafka> {
        self.kafka.embedded()
    }

    /// Creates a topic with a unique name; on a real broker through the admin API (which fails the
    /// test loudly if the broker cannot be reached).
    pub fn topic(&self, prefix: &str, partitions: i32) -> String {
        let name = unique(prefix);
        self.kafka.create_topic(&name, partitions);
        name
    }

    /// An application on this cluster, with `extra` TOML merged into its configuration.
    pub fn application(&self, extra: &str) -> kafka_runtime::KafkaApplication {
        self.kafka.application_with(self.config(extra))
    }

    /// An application with `extra` TOML and no listener: its template, hooks, reply reader.
    pub async fn start_without_listeners(&self, extra: &str) -> kafka_runtime::RunningApplication {
        self.application(extra)
            .with_listeners([])
            .start()
            .await
            .expect("application starts")
    }

    /// Starts `listener` alone, with `extra` TOML, the properties `topic` and `group` (for its
    /// `${topic}` and `${group}`) and `state` registered.
    pub async fn start_listener(
        &self,
        extra: &str,
        listener: &str,
        (topic, group): (&str, &str),
        state: impl Send + Sync + 'static,
    ) -> kafka_runtime::RunningApplication {
        self.application(extra)
            .with_listeners([listener])
            .with_property("topic", topic)
            .with_property("group", group)
            .with_state(state)
            .start()
            .await
            .expect("application starts")
    }

    /// Configuration pointing at this cluster, with `extra` TOML under `[kafka]` merged in.
    pub fn config(&self, extra: &str) -> Config {
        Config::from_toml_str(&format!("[kafka]\n{extra}"), "test.toml")
            .expect("test configuration is valid")
            .with_bootstrap_servers(self.bootstrap())
    }

    /// The group's committed offset per partition (`None` where nothing was committed), read by
    /// a client that does not join the group.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .expect("reader consumer");
        let mut tpl = TopicPartitionList::new();
        for partition in 0..partitions {
            tpl.add_partition(topic, partition);
        }
        // A busy real broker (tansu digesting a backlog) can take longer than one request's
        // timeout to answer: ask again for a while before failing the test.
        let deadline = Instant::now() + Duration::from_secs(60);
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(committed) => break committed,
                Err(error) if Instant::now() >= deadline => {
                    panic!("committed offsets are readable: {error}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        (0..partitions)
            .map(|partition| {
                match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                }
            })
            .collect()
    }

    /// The sum of the group's committed offsets over `partitions` partitions (0 where nothing was
    /// committed): the number of records committed, for a topic that started empty.
    pub fn committed_total(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        self.committed(group, topic, partitions)
            .into_iter()
            .map(|offset| offset.unwrap_or(0))
            .sum()
    }

    /// Waits until the group's committed offsets equal `expected`; returns the last reading.
    pub async fn wait_committed(
        &self,
        group: &str,
        topic: &str,
        expected: &[Option<i64>],
    ) -> Vec<Option<i64>> {
        let partitions = i32::try_from(expected.len()).expect("partition count");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let committed = self.committed(group, topic, partitions);
            if committed == expected || Instant::now() > deadline {
                return committed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Produces `(key, value)` records as fast as librdkafka takes them (waiting while its queue is
/// full), then waits until every one is delivered.
pub fn produce_all(
    bootstrap: &str,
    topic: &str,
    records: impl IntoIterator<Item = (String, String)>,
) {
    let producer = producer(bootstrap);
    for (key, value) in records {
        send_waiting(&producer, BaseRecord::to(topic).key(&key).payload(&value));
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("records are produced");
}

/// Produces `count` keyless records `v<n>`, record `n` to partition `n % partitions`.
pub fn produce_spread(bootstrap: &str, topic: &str, partitions: i32, count: i64) {
    let producer = producer(bootstrap);
    for n in 0..count {
        let value = format!("v{n}");
        let partition = i32::try_from(n % i64::from(partitions)).expect("partition");
        send_waiting(
            &producer,
            BaseRecord::<(), _>::to(topic)
                .payload(&value)
                .partition(partition),
        );
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("records are produced");
}

/// A producer that batches for 20 ms.
pub fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .expect("producer")
}

/// Sends `record`, waiting while the producer's queue is full.
pub fn send_waiting<
    K: rdkafka::message::ToBytes + ?Sized,
    V: rdkafka::message::ToBytes + ?Sized,
>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, V>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, returned)) => {
                producer.poll(Duration::from_millis(10));
                record = returned;
            }
        }
    }
}

/// The repository's root.
pub fn repository() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
}

/// A tansu of a test's own, run by `scripts/broker.sh` in a directory of its own (so that
/// stopping or securing it disturbs no other test); stopped when dropped.
pub struct OwnBroker {
    dir: std::path::PathBuf,
    pub bootstrap: String,
}

impl OwnBroker {
    /// `scripts/broker.sh start` (or `start-tls ...`, `start-sasl ...`: `args`).
    pub fn start(args: &[&str]) -> Self {
        let dir = repository().join("target").join(unique("broker-own"));
        let bootstrap = Self::script(&dir, args, None);
        OwnBroker { dir, bootstrap }
    }

    /// Runs `scripts/broker.sh args` on this broker (`port`: where `start` listens); its output.
    pub fn run(&self, args: &[&str], port: Option<&str>) -> String {
        Self::script(&self.dir, args, port)
    }

    fn script(dir: &std::path::Path, args: &[&str], port: Option<&str>) -> String {
        let mut command = std::process::Command::new(repository().join("scripts/broker.sh"));
        command.args(args).env("BROKER_DIR", dir);
        if let Some(port) = port {
            command.env("BROKER_PORT", port);
        }
        let output = command.output().expect("scripts/broker.sh runs");
        assert!(
            output.status.success(),
            "scripts/broker.sh {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repository().join("scripts/broker.sh"))
            .arg("stop")
            .env("BROKER_DIR", &self.dir)
            .status();
    }
}

/// The value of the last header named `name` of a record read back.
pub fn header<'a>(record: &'a rdkafka::message::OwnedMessage, name: &str) -> Option<&'a [u8]> {
    use rdkafka::message::{Headers as _, Message as _};
    record
        .headers()?
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
}

/// Reads `count` records from the start of `topic` with a plain rdkafka consumer (fewer if they
/// don't arrive within the patience).
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::message::Message;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while records.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if message.topic() == topic {
                records.push(message.detach());
            }
        }
    }
    records
}

/// `target/<profile>/examples/user-events`, which `scripts/test.sh` builds before the tests.
pub fn example_binary() -> std::path::PathBuf {
    example("user-events")
}

/// `target/<profile>/examples/<name>`, which `scripts/test.sh` builds before the tests.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it first with cargo build --examples",
        binary.display()
    );
    binary
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Collects what handlers saw, for the test to wait on.
pub struct Recorder<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder(Arc::clone(&self.0))
    }
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T> Recorder<T> {
    pub fn push(&self, value: T) {
        self.0.lock().expect("recorder lock").push(value);
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("recorder lock").len()
    }

    /// Takes every value out (for tests that hold `Ack`s and release them later).
    pub fn take_all(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().expect("recorder lock"))
    }

    /// Waits until at least `count` values are held.
    pub async fn wait_len(&self, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.len() >= count,
            "waited {PATIENCE:?} for {count} values, have {}",
            self.len()
        );
    }
}

impl<T: Clone> Recorder<T> {
    pub fn snapshot(&self) -> Vec<T> {
        self.0.lock().expect("recorder lock").clone()
    }

    /// Waits until at least `count` values were recorded; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<T> {
        self.wait_len(count).await;
        self.snapshot()
    }
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// `GET path` from an HTTP endpoint: (status code, body).
pub async fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    http(address, "GET", path).await
}

/// `method path` (no body) to an HTTP endpoint: (status code, body). A plain HTTP/1.1 client,
/// so that the test does not share code with the server it checks.
pub async fn http(address: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response is read");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the Prometheus sample `name{...}` whose labels include every `labels` pair.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
                && labels
                    .iter()
                    .all(|(key, value)| series.contains(&format!("{key}=\"{value}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}
