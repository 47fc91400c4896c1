//! Framework overhead against raw rdkafka, measured in one process, on one broker, on the same
//! pre-produced records. See `BENCHMARKS.md` for the results and how to read them.
//!
//! ```text
//! cargo bench --bench throughput                  # every scenario, embedded broker
//! cargo bench --bench throughput -- --quick       # scenarios 1 and 2, ends with `ratio listener/raw: <x>`
//! cargo bench --bench throughput -- --quick --default-logging   # the same under run()'s logging
//! cargo bench --bench throughput -- --only batch  # a batch listener, ends with `ratio batch/raw: <x>`
//! cargo bench --bench throughput -- --only parallel  # ordering = key, ends with `ratio key/partition: <x>`
//! cargo bench --bench throughput -- --only transform # consume-transform-produce, ends with `ratio send_to/raw: <x>`
//! KAFKA_BOOTSTRAP_SERVERS=host:port cargo bench --bench throughput   # a real broker
//! ```
//!
//! Run by `cargo test` (as CI does, through `--all-targets`) it makes a smoke run with a tiny
//! count. Options: `--count N` (records per consume scenario), `--rounds N` (interleaved rounds),
//! `--only a,b` (scenarios: consume, batch, parallel, transform, produce, latency, scaling,
//! memory, python),
//! `--json FILE`
//! (results for `benches/chart.py`).

mod alloc;
mod python;
mod report;
mod transform;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kafka_runtime::prelude::*;
use kafka_runtime::{Config, EmbeddedKafka, RunningApplication};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use report::{Report, Row};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Partitions of every benchmark topic (the listener's workers run one per partition).
const PARTITIONS: i32 = 6;

/// The seed's user event, padded to the record size under test.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
    email: Option<String>,
    timestamp: Option<String>,
    /// Nanoseconds since the benchmark started, for the latency scenario.
    sent_at: u64,
    padding: String,
}

fn event(n: usize, size: usize) -> UserEvent {
    let mut event = UserEvent {
        event_type: "user_updated".to_owned(),
        user_id: format!("user-{n}"),
        email: Some("user@example.com".to_owned()),
        timestamp: Some("2026-11-28T00:00:00Z".to_owned()),
        sent_at: 0,
        padding: String::new(),
    };
    let bare = serde_json::to_vec(&event).map_or(0, |v| v.len());
    event.padding = "x".repeat(size.saturating_sub(bare));
    event
}

fn since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Where records go: the embedded mock cluster, or the broker at `KAFKA_BOOTSTRAP_SERVERS`.
enum Broker {
    Embedded(EmbeddedKafka),
    External(String),
}

impl Broker {
    fn start() -> Self {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.trim().is_empty() => Broker::External(servers),
            _ => Broker::Embedded(EmbeddedKafka::start().expect("embedded cluster")),
        }
    }

    fn bootstrap(&self) -> &str {
        match self {
            Broker::Embedded(embedded) => embedded.bootstrap_servers(),
            Broker::External(servers) => servers,
        }
    }

    fn describe(&self) -> String {
        match self {
            Broker::Embedded(_) => "embedded mock cluster (librdkafka)".to_owned(),
            Broker::External(servers) => format!("broker at {servers}"),
        }
    }

    async fn topic(&self, prefix: &str) -> String {
        self.topic_of(prefix, PARTITIONS).await
    }

    async fn topic_of(&self, prefix: &str, partitions: i32) -> String {
        let name = format!("{prefix}-{}", unique());
        match self {
            Broker::Embedded(embedded) => embedded
                .create_topic(&name, partitions)
                .expect("topic is created"),
            Broker::External(servers) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", servers)
                    .create()
                    .expect("admin client");
                let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                let results = admin
                    .create_topics([&topic], &options)
                    .await
                    .expect("topics are created");
                for result in results {
                    if let Err((topic, code)) = result {
                        panic!("cannot create {topic}: {code}");
                    }
                }
            }
        }
        name
    }

    /// How many records of `size` bytes a scenario may use: the mock cluster keeps at most 5 MB
    /// (and 100,000 records) per partition and drops the oldest beyond that.
    fn capacity(&self, wanted: usize, size: usize) -> usize {
        self.capacity_of(wanted, size, PARTITIONS)
    }

    /// How many of `wanted` records of `size` bytes a topic of `partitions` partitions keeps.
    fn capacity_of(&self, wanted: usize, size: usize, partitions: i32) -> usize {
        match self {
            Broker::Embedded(_) => {
                let per_partition = (4 * 1024 * 1024) / (size + 120);
                let fits = per_partition.min(90_000) * usize::try_from(partitions).unwrap_or(1);
                if wanted > fits {
                    eprintln!(
                        "  the embedded cluster keeps {fits} records of {size} B: using that many"
                    );
                }
                wanted.min(fits)
            }
            Broker::External(_) => wanted,
        }
    }

    fn application(&self, config: Config) -> KafkaApplication {
        let app = KafkaApplication::new(config);
        match self {
            Broker::Embedded(embedded) => app.with_embedded(embedded.clone()),
            Broker::External(_) => app,
        }
    }
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        since_start(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Produces `count` events of `size` bytes as fast as the client goes (the data of a scenario).
fn produce_backlog(bootstrap: &str, topic: &str, count: usize, size: usize) {
    let started = Instant::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for n in 0..count {
        let key = format!("user-{}", n % 1000);
        let value = serde_json::to_vec(&event(n, size)).expect("event encodes");
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(1));
                    record = returned;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("backlog is produced");
    eprintln!(
        "  produced {count} records of {size} B to {topic} in {:.1?}",
        started.elapsed()
    );
}

/// One consume run: records per second between the first and the last record handled, and
/// allocations per record in that window.
#[derive(Debug, Clone, Copy)]
struct Run {
    per_second: f64,
    allocations: f64,
    /// CPU time of the whole process (broker, librdkafka and consumer threads) per record, in
    /// nanoseconds: less sensitive than `per_second` to how the two cores were shared.
    cpu_nanos: f64,
    /// The part of `cpu_nanos` spent in librdkafka's threads (`rdk:*`: fetching, the mock
    /// broker): what is left is the consumer side, raw loop or listener.
    librdkafka_nanos: f64,
}

/// CPU time used by this process so far (user + system, every thread).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        usage.assume_init()
    };
    let duration = |time: libc::timeval| {
        Duration::from_secs(time.tv_sec.unsigned_abs())
            + Duration::from_micros(time.tv_usec.unsigned_abs())
    };
    duration(usage.ru_utime) + duration(usage.ru_stime)
}

/// CPU time of librdkafka's threads (`rdk:*`: the clients' broker and main threads, the mock
/// cluster's) alive now, in nanoseconds (`/proc/self/task/*/schedstat`).
fn librdkafka_cpu() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("rdk:"))
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// What a run has used so far: when, allocations, process CPU, librdkafka's CPU.
type Mark = (Instant, u64, Duration, u64);

fn mark() -> Mark {
    (Instant::now(), alloc::count(), cpu_time(), librdkafka_cpu())
}

/// Counts records until a target, remembering when the first arrived.
struct Counter {
    target: u64,
    seen: AtomicU64,
    first: OnceLock<Mark>,
    last: Mutex<Option<Mark>>,
    done: Notify,
    latencies: Mutex<Vec<u64>>,
    record_latency: bool,
}

impl Counter {
    fn new(target: usize, record_latency: bool) -> Arc<Self> {
        Arc::new(Counter {
            target: target as u64,
            seen: AtomicU64::new(0),
            first: OnceLock::new(),
            last: Mutex::new(None),
            done: Notify::new(),
            latencies: Mutex::new(Vec::new()),
            record_latency,
        })
    }

    fn hit(&self, sent_at: u64) {
        self.first.get_or_init(mark);
        if self.record_latency {
            let latency = since_start().saturating_sub(sent_at);
            if let Ok(mut latencies) = self.latencies.lock() {
                latencies.push(latency);
            }
        }
        if self.seen.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(mark());
            }
            self.done.notify_one();
        }
    }

    async fn wait(&self, patience: Duration) -> Run {
        let finished = tokio::time::timeout(patience, async {
            while self.seen.load(Ordering::Acquire) < self.target {
                self.done.notified().await;
            }
        })
        .await;
        assert!(
            finished.is_ok(),
            "only {} of {} records arrived within {patience:?}",
            self.seen.load(Ordering::Acquire),
            self.target
        );
        let (start, allocs_start, cpu_start, rdk_start) =
            *self.first.get().expect("a first record");
        let (end, allocs_end, cpu_end, rdk_end) = self
            .last
            .lock()
            .ok()
            .and_then(|last| *last)
            .expect("a last record");
        let records = (self.target - 1).max(1) as f64;
        Run {
            per_second: records / end.duration_since(start).as_secs_f64().max(1e-9),
            allocations: (allocs_end - allocs_start) as f64 / records,
            cpu_nanos: cpu_end.saturating_sub(cpu_start).as_secs_f64() * 1e9 / records,
            librdkafka_nanos: rdk_end.saturating_sub(rdk_start) as f64 / records,
        }
    }
}

/// librdkafka consumer properties a scenario sets on both sides.
type Tuning = &'static [(&'static str, &'static str)];

/// Scenario 1: what our listener does per record, by hand: a StreamConsumer, the JSON payload
/// into the struct, the offset stored, commits every second (librdkafka's auto-commit of stored
/// offsets).
async fn raw_consume(bootstrap: &str, topic: &str, counter: Arc<Counter>, tuning: Tuning) -> Run {
    let consumer = raw_consumer(bootstrap, &format!("raw-{}", unique()), topic, tuning);
    tokio::select! {
        () = raw_read(&consumer, &counter) => {}
        () = tokio::time::sleep(patience(counter.target)) => {}
    }
    counter.wait(Duration::ZERO).await
}

/// `consumers` raw consumers in one group, each on a task of its own, until `counter` is done.
async fn raw_group_consume(bootstrap: &str, topic: &str, consumers: u32, count: usize) -> Run {
    let counter = Counter::new(count, false);
    let group = format!("raw-{}", unique());
    let readers: Vec<_> = (0..consumers)
        .map(|_| {
            let consumer = raw_consumer(bootstrap, &group, topic, &[]);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move { raw_read(&consumer, &counter).await })
        })
        .collect();
    let run = counter.wait(patience(count as u64)).await;
    for reader in readers {
        reader.abort();
    }
    run
}

fn raw_consumer(bootstrap: &str, group: &str, topic: &str, tuning: Tuning) -> StreamConsumer {
    let mut config = ClientConfig::new();
    for (key, value) in tuning {
        config.set(*key, *value);
    }
    let consumer: StreamConsumer = config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Per record: the JSON payload into the struct, the offset stored, the counter hit.
async fn raw_read(consumer: &StreamConsumer, counter: &Counter) {
    while counter.seen.load(Ordering::Acquire) < counter.target {
        let message = match consumer.recv().await {
            Ok(message) => message,
            Err(error) => panic!("raw consumer: {error}"),
        };
        let event: UserEvent = match message.payload().map(serde_json::from_slice) {
            Some(Ok(event)) => event,
            other => panic!("undecodable record: {other:?}"),
        };
        consumer
            .store_offset_from_message(&message)
            .expect("offset is stored");
        counter.hit(event.sent_at);
    }
}

/// How long a scenario may take before it is declared stuck.
fn patience(records: u64) -> Duration {
    Duration::from_secs(60 + records / 2_000)
}

#[kafka_listener(
    id = "bench",
    topics = "${bench.topic}",
    group = "${bench.group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn bench(Payload(event): Payload<UserEvent>, ack: Ack, State(counter): State<Arc<Counter>>) {
    ack.acknowledge();
    counter.hit(event.sent_at);
}

#[kafka_listener(
    id = "bench_batch",
    topics = "${bench.topic}",
    group = "${bench.group}",
    auto_startup = false
)]
async fn bench_batch(Batch(events): Batch<UserEvent>, State(counter): State<Arc<Counter>>) {
    for event in &events {
        counter.hit(event.payload.sent_at);
    }
}

#[kafka_listener(
    id = "bench_key",
    topics = "${bench.topic}",
    group = "${bench.group}",
    ack_mode = "manual",
    ordering = "key",
    auto_startup = false
)]
async fn bench_key(
    Payload(event): Payload<UserEvent>,
    ack: Ack,
    State(counter): State<Arc<Counter>>,
) {
    ack.acknowledge();
    counter.hit(event.sent_at);
}

/// An IO-bound handler: awaits 5 ms per record.
async fn io_bound(event: UserEvent, counter: &Counter) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    counter.hit(event.sent_at);
}

#[kafka_listener(
    id = "io_partition",
    topics = "${bench.topic}",
    group = "${bench.group}",
    auto_startup = false
)]
async fn io_partition(Payload(event): Payload<UserEvent>, State(counter): State<Arc<Counter>>) {
    io_bound(event, &counter).await;
}

#[kafka_listener(
    id = "io_key",
    topics = "${bench.topic}",
    group = "${bench.group}",
    ordering = "key",
    auto_startup = false
)]
async fn io_key(Payload(event): Payload<UserEvent>, State(counter): State<Arc<Counter>>) {
    io_bound(event, &counter).await;
}

/// Scenario 2: the same through `#[kafka_listener]` with `Payload<T>` + `Ack` (manual acks);
/// scenario 8 through a batch listener (`bench_batch`).
async fn listener_start(
    broker: &Broker,
    (listener, topic): (&str, &str),
    concurrency: u32,
    counter: Arc<Counter>,
    tuning: Tuning,
) -> RunningApplication {
    let properties: String = tuning
        .iter()
        .map(|(key, value)| format!("consumer.properties.\"{key}\" = \"{value}\"\n"))
        .collect();
    let config = Config::from_toml_str(
        &format!(
            "[kafka]\nlistener.concurrency = {concurrency}\nlistener.max-parallel = 100\n\
             {properties}{}\n",
            std::env::var("BENCH_LISTENER").unwrap_or_default()
        ),
        "bench",
    )
    .expect("bench config")
    .with_bootstrap_servers(broker.bootstrap());
    broker
        .application(config)
        .with_listeners([listener])
        .with_property("bench.topic", topic)
        .with_property("bench.group", format!("listener-{}", unique()))
        .with_state(counter)
        .start()
        .await
        .expect("listener starts")
}

async fn listener_consume(broker: &Broker, topic: &str, concurrency: u32, count: usize) -> Run {
    consume_with(broker, ("bench", topic), concurrency, count).await
}

async fn consume_with(
    broker: &Broker,
    (listener, topic): (&str, &str),
    concurrency: u32,
    count: usize,
) -> Run {
    let counter = Counter::new(count, false);
    let running = listener_start(
        broker,
        (listener, topic),
        concurrency,
        Arc::clone(&counter),
        &[],
    )
    .await;
    let run = counter.wait(patience(count as u64)).await;
    running.shutdown().await;
    run
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.is_empty() {
        f64::NAN
    } else if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Raw rdkafka (scenario 1) and `listener` on `topic`, interleaved: per round raw then the
/// listener (or the other way round on odd rounds, so that neither always runs on a warmer
/// machine). Gives both runs of each round.
async fn interleaved(
    broker: &Broker,
    options: &Options,
    (listener, topic): (&str, &str),
    count: usize,
    label: &str,
) -> Vec<(Run, Run)> {
    let mut rounds = Vec::new();
    for round in 0..options.rounds {
        let mut pair = [None, None];
        for step in 0..2 {
            if (step + round) % 2 == 1 {
                pair[1] = Some(consume_with(broker, (listener, topic), 1, count).await);
            } else {
                let counter = Counter::new(count, false);
                pair[0] = Some(raw_consume(broker.bootstrap(), topic, counter, &[]).await);
            }
        }
        let (Some(r), Some(l)) = (pair[0], pair[1]) else {
            continue;
        };
        eprintln!(
            "  {label} round {}: raw {:.0}/s ({:.0} ns CPU, {:.0} in librdkafka), {listener} {:.0}/s ({:.0} ns CPU, {:.0} in librdkafka), ratio {:.3}",
            round + 1,
            r.per_second,
            r.cpu_nanos,
            r.librdkafka_nanos,
            l.per_second,
            l.cpu_nanos,
            l.librdkafka_nanos,
            l.per_second / r.per_second
        );
        rounds.push((r, l));
    }
    rounds
}

/// Scenarios 1 and 2.
async fn consume(broker: &Broker, options: &Options, size: usize, report: &mut Report) -> f64 {
    let count = broker.capacity(options.count, size);
    let topic = broker.topic(&format!("consume-{size}b")).await;
    produce_backlog(broker.bootstrap(), &topic, count, size);
    let rounds = interleaved(
        broker,
        options,
        ("bench", &topic),
        count,
        &format!("{size} B"),
    )
    .await;
    let mut raw: Vec<f64> = rounds.iter().map(|(r, _)| r.per_second).collect();
    let mut ours: Vec<f64> = rounds.iter().map(|(_, l)| l.per_second).collect();
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(r, l)| l.per_second / r.per_second)
        .collect();
    let mut raw_allocs: Vec<f64> = rounds.iter().map(|(r, _)| r.allocations).collect();
    let mut our_allocs: Vec<f64> = rounds.iter().map(|(_, l)| l.allocations).collect();
    let mut raw_cpu: Vec<f64> = rounds.iter().map(|(r, _)| r.cpu_nanos).collect();
    let mut our_cpu: Vec<f64> = rounds.iter().map(|(_, l)| l.cpu_nanos).collect();
    let consumer_side = |run: &Run| run.cpu_nanos - run.librdkafka_nanos;
    let mut raw_side: Vec<f64> = rounds.iter().map(|(r, _)| consumer_side(r)).collect();
    let mut our_side: Vec<f64> = rounds.iter().map(|(_, l)| consumer_side(l)).collect();
    let ratio = median(&mut ratios);
    report.rows.push(Row::new(
        &format!("consume {size} B: raw rdkafka (1)"),
        median(&mut raw),
        "msg/s",
    ));
    report.rows.push(
        Row::new(
            &format!("consume {size} B: #[kafka_listener] (2)"),
            median(&mut ours),
            "msg/s",
        )
        .with_ratio("listener/raw", ratio),
    );
    report.rows.push(Row::new(
        &format!("allocations per record {size} B: raw / listener"),
        median(&mut raw_allocs),
        &format!("/ {:.1}", median(&mut our_allocs)),
    ));
    report.rows.push(Row::new(
        &format!("process CPU ns per record {size} B: raw / listener"),
        median(&mut raw_cpu),
        &format!("/ {:.0}", median(&mut our_cpu)),
    ));
    report.rows.push(Row::new(
        &format!(
            "consumer-side CPU ns per record {size} B (not librdkafka's threads): raw / listener"
        ),
        median(&mut raw_side),
        &format!("/ {:.0}", median(&mut our_side)),
    ));
    ratio
}

/// Scenario 9: parallelism inside one partition. IO-bound (each handler awaits 5 ms), one
/// partition, 1,000 distinct keys: `ordering = "key"` with `max-parallel = 100` against
/// `ordering = "partition"`. Then instant handlers on 100 B records: what `ordering = "key"`
/// costs when there is nothing to overlap.
async fn parallel(broker: &Broker, options: &Options, report: &mut Report) -> f64 {
    let count = 2_000;
    let topic = broker.topic_of("parallel-io", 1).await;
    produce_backlog(broker.bootstrap(), &topic, count, 100);
    let (mut by_partition, mut by_key, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let partition = consume_with(broker, ("io_partition", &topic), 1, count).await;
        let key = consume_with(broker, ("io_key", &topic), 1, count).await;
        eprintln!(
            "  IO-bound round {}: partition {:.0}/s, key {:.0}/s, ratio {:.1}",
            round + 1,
            partition.per_second,
            key.per_second,
            key.per_second / partition.per_second
        );
        by_partition.push(partition.per_second);
        by_key.push(key.per_second);
        ratios.push(key.per_second / partition.per_second);
    }
    let ratio = median(&mut ratios);
    report.rows.push(Row::new(
        "IO-bound (5 ms), 1 partition: ordering = partition (9)",
        median(&mut by_partition),
        "msg/s",
    ));
    report.rows.push(
        Row::new(
            "IO-bound (5 ms), 1 partition, 1,000 keys: ordering = key, max-parallel 100 (9)",
            median(&mut by_key),
            "msg/s",
        )
        .with_ratio("key/partition", ratio),
    );
    let count = broker.capacity_of(options.count, 100, 1);
    let topic = broker.topic_of("parallel-instant", 1).await;
    produce_backlog(broker.bootstrap(), &topic, count, 100);
    let (mut instant, mut keyed) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let partition = consume_with(broker, ("bench", &topic), 1, count).await;
        let key = consume_with(broker, ("bench_key", &topic), 1, count).await;
        eprintln!(
            "  instant round {}: partition {:.0}/s, key {:.0}/s",
            round + 1,
            partition.per_second,
            key.per_second
        );
        instant.push(key.per_second / partition.per_second);
        keyed.push(key.per_second);
    }
    report.rows.push(
        Row::new(
            "instant handler, 100 B, 1 partition: ordering = key (9)",
            median(&mut keyed),
            "msg/s",
        )
        .with_ratio("key/partition", median(&mut instant)),
    );
    ratio
}

/// Scenario 8: a batch listener (`Batch<UserEvent>`, committed per batch) against raw rdkafka,
/// 100 B records.
async fn batch(broker: &Broker, options: &Options, report: &mut Report) -> f64 {
    let count = broker.capacity(options.count, 100);
    let topic = broker.topic("batch-100b").await;
    produce_backlog(broker.bootstrap(), &topic, count, 100);
    let rounds = interleaved(broker, options, ("bench_batch", &topic), count, "batch").await;
    let mut ours: Vec<f64> = rounds.iter().map(|(_, l)| l.per_second).collect();
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(r, l)| l.per_second / r.per_second)
        .collect();
    let ratio = median(&mut ratios);
    report.rows.push(
        Row::new(
            "consume 100 B: batch listener (8)",
            median(&mut ours),
            "msg/s",
        )
        .with_ratio("batch/raw", ratio),
    );
    ratio
}

/// Scenario 4: producing acks=all + gzip + JSON, raw pipelined `FutureProducer` against the
/// template's `send` (pipelined by the caller) and `send_batch`.
async fn produce(broker: &Broker, options: &Options, report: &mut Report) {
    let count = options.count / 2;
    let events: Vec<UserEvent> = (0..count).map(|n| event(n, 100)).collect();
    let (mut raw, mut send, mut batch) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..options.rounds {
        let topic = broker.topic("produce-raw").await;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("acks", "all")
            .set("compression.type", "gzip")
            .create()
            .expect("producer");
        let started = Instant::now();
        let sends = events.iter().enumerate().map(|(n, event)| {
            let producer = producer.clone();
            let topic = topic.clone();
            let key = format!("user-{}", n % 1000);
            let value = serde_json::to_vec(event).expect("encodes");
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(error, _)| error)
            }
        });
        let results = futures_util::future::join_all(sends).await;
        assert!(results.iter().all(Result::is_ok), "raw sends succeed");
        raw.push(count as f64 / started.elapsed().as_secs_f64());

        let config = Config::from_toml_str(
            "[kafka.producer]\nacks = \"all\"\ncompression-type = \"gzip\"\n",
            "bench",
        )
        .expect("producer config");
        let template = KafkaTemplate::new(&config.kafka, broker.bootstrap()).expect("template");
        let topic = broker.topic("produce-send").await;
        let started = Instant::now();
        let sends = events.iter().enumerate().map(|(n, event)| {
            let template = template.clone();
            let topic = topic.clone();
            async move {
                template
                    .send(&topic, &format!("user-{}", n % 1000), event)
                    .await
            }
        });
        let results = futures_util::future::join_all(sends).await;
        assert!(results.iter().all(Result::is_ok), "template sends succeed");
        send.push(count as f64 / started.elapsed().as_secs_f64());

        let records: Vec<(String, UserEvent)> = events
            .iter()
            .enumerate()
            .map(|(n, event)| (format!("user-{}", n % 1000), event.clone()))
            .collect();
        let topic = broker.topic("produce-batch").await;
        let started = Instant::now();
        let results = template.send_batch(&topic, records).await;
        assert!(results.iter().all(Result::is_ok), "batch sends succeed");
        batch.push(count as f64 / started.elapsed().as_secs_f64());
    }
    let raw = median(&mut raw);
    report.rows.push(Row::new(
        "produce 100 B: raw FutureProducer (4)",
        raw,
        "msg/s",
    ));
    let send = median(&mut send);
    report.rows.push(
        Row::new("produce 100 B: KafkaTemplate::send (4)", send, "msg/s")
            .with_ratio("template/raw", send / raw),
    );
    let batch = median(&mut batch);
    report.rows.push(
        Row::new(
            "produce 100 B: KafkaTemplate::send_batch (4)",
            batch,
            "msg/s",
        )
        .with_ratio("template/raw", batch / raw),
    );
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1_000.0
}

/// The mock cluster answers a fetch only after `fetch.wait.max.ms` (500 ms by default) even
/// when records are there; a real broker answers at once. Both sides wait at most 5 ms here.
const LATENCY_TUNING: Tuning = &[("fetch.wait.max.ms", "5")];

/// Scenario 5: produce-to-handler latency at a fixed, moderate rate.
async fn latency(broker: &Broker, options: &Options, report: &mut Report) {
    let rate = 2_000u64;
    let count = if options.quick { 2_000 } else { 20_000 };
    for listener in [false, true] {
        let topic = broker.topic("latency").await;
        let counter = Counter::new(count, true);
        let running = if listener {
            Some(
                listener_start(
                    broker,
                    ("bench", &topic),
                    1,
                    Arc::clone(&counter),
                    LATENCY_TUNING,
                )
                .await,
            )
        } else {
            let bootstrap = broker.bootstrap().to_owned();
            let (topic, counter) = (topic.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                raw_consume(&bootstrap, &topic, counter, LATENCY_TUNING).await;
            });
            None
        };
        // Wait out the group join, so that records are not queued behind it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for n in 0..count {
            tick.tick().await;
            let mut event = event(n, 100);
            event.sent_at = since_start();
            let value = serde_json::to_vec(&event).expect("encodes");
            let record = FutureRecord::<(), _>::to(&topic).payload(&value);
            // The delivery future is not awaited: sends keep the rate.
            drop(producer.send_result(record));
        }
        counter.wait(patience(count as u64)).await;
        if let Some(running) = running {
            running.shutdown().await;
        }
        let mut latencies = counter
            .latencies
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        latencies.sort_unstable();
        let name = if listener {
            "#[kafka_listener]"
        } else {
            "raw rdkafka"
        };
        report.rows.push(Row::new(
            &format!("latency at {rate}/s, {name}: p50 / p99 / p99.9 (5)"),
            percentile(&latencies, 0.5),
            &format!(
                "µs / {:.0} µs / {:.0} µs",
                percentile(&latencies, 0.99),
                percentile(&latencies, 0.999)
            ),
        ));
    }
}

/// Scenario 7: the listener's throughput at concurrency 1, 2 and 3 on the 6-partition topic.
async fn scaling(broker: &Broker, options: &Options, report: &mut Report) {
    let count = broker.capacity(options.count, 100);
    let topic = broker.topic("scaling").await;
    produce_backlog(broker.bootstrap(), &topic, count, 100);
    for concurrency in 1..=3 {
        let (mut raw, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..options.rounds {
            let mut pair = [0.0; 2];
            for step in 0..2 {
                if (step + round) % 2 == 1 {
                    pair[1] = listener_consume(broker, &topic, concurrency, count)
                        .await
                        .per_second;
                } else {
                    pair[0] = raw_group_consume(broker.bootstrap(), &topic, concurrency, count)
                        .await
                        .per_second;
                }
            }
            eprintln!(
                "  concurrency {concurrency} round {}: raw {:.0}/s, listener {:.0}/s",
                round + 1,
                pair[0],
                pair[1]
            );
            raw.push(pair[0]);
            ours.push(pair[1]);
            ratios.push(pair[1] / pair[0]);
        }
        report.rows.push(Row::new(
            &format!("raw rdkafka, {concurrency} consumers in one group (7)"),
            median(&mut raw),
            "msg/s",
        ));
        report.rows.push(
            Row::new(
                &format!("listener, concurrency {concurrency} (7)"),
                median(&mut ours),
                "msg/s",
            )
            .with_ratio("listener/raw", median(&mut ratios)),
        );
    }
}

#[kafka_listener(
    id = "slowish",
    topics = "${bench.topic}",
    group = "${bench.group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn slowish(
    Payload(event): Payload<UserEvent>,
    ack: Ack,
    State(counter): State<Arc<Counter>>,
) {
    // ~20 µs of work per record.
    let until = Instant::now() + Duration::from_micros(20);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    ack.acknowledge();
    counter.hit(event.sent_at);
}

/// Scenario 6, in a process of its own (`--memory N --topic T`): drains the N-record backlog the
/// parent produced to T with a slow-ish handler and prints its peak RSS.
async fn memory_child(broker: &Broker, count: usize, topic: &str) {
    let before = report::peak_rss_kib();
    let counter = Counter::new(count, false);
    let config = Config::from_toml_str("[kafka]\n", "bench")
        .expect("config")
        .with_bootstrap_servers(broker.bootstrap());
    let running = broker
        .application(config)
        .with_listeners(["slowish"])
        .with_property("bench.topic", topic)
        .with_property("bench.group", format!("memory-{}", unique()))
        .with_state(Arc::clone(&counter))
        .start()
        .await
        .expect("listener starts");
    counter.wait(patience(count as u64) * 4).await;
    running.shutdown().await;
    println!("peak-rss-kib {} {}", before, report::peak_rss_kib());
}

async fn memory(broker: &Broker, options: &Options, report: &mut Report) {
    let counts: &[usize] = if options.quick {
        &[20_000, 100_000]
    } else {
        &[100_000, 1_000_000]
    };
    for &count in counts {
        let count = broker.capacity(count, 100);
        let topic = broker.topic("memory").await;
        produce_backlog(broker.bootstrap(), &topic, count, 100);
        let exe = std::env::current_exe().expect("bench binary");
        let output = std::process::Command::new(exe)
            .args(["--memory", &count.to_string(), "--topic", &topic])
            // The child drains the parent's broker (the embedded one too, over loopback).
            .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
            .output()
            .expect("memory child runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some((started, drained)) = stdout.lines().find_map(|line| {
            let mut parts = line.strip_prefix("peak-rss-kib ")?.split_whitespace();
            Some((
                parts.next()?.parse::<f64>().ok()?,
                parts.next()?.parse::<f64>().ok()?,
            ))
        }) else {
            panic!(
                "memory child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        report.rows.push(Row::new(
            &format!("peak RSS draining {count} records (6)"),
            drained / 1024.0,
            &format!("MiB (at start: {:.0} MiB)", started / 1024.0),
        ));
    }
}

/// Command-line options.
struct Options {
    quick: bool,
    count: usize,
    rounds: usize,
    only: Option<Vec<String>>,
    json: Option<String>,
    memory: Option<usize>,
    topic: Option<String>,
    /// Install the log subscriber `kafka_runtime::run()` installs, at its default level.
    default_logging: bool,
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            quick: false,
            count: 200_000,
            rounds: 3,
            only: None,
            json: None,
            memory: None,
            topic: None,
            default_logging: false,
        };
        let mut args = std::env::args().skip(1);
        let mut count = None;
        let mut benchmarking = false;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--count" => count = args.next().and_then(|v| v.parse().ok()),
                "--rounds" => {
                    options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(3);
                }
                "--only" => {
                    options.only = args
                        .next()
                        .map(|list| list.split(',').map(str::to_owned).collect());
                }
                "--json" => options.json = args.next(),
                "--memory" => options.memory = args.next().and_then(|v| v.parse().ok()),
                "--topic" => options.topic = args.next(),
                "--default-logging" => options.default_logging = true,
                "--bench" => benchmarking = true,
                // `cargo test` may pass filters and flags of its own.
                _ => {}
            }
        }
        if !benchmarking && options.memory.is_none() {
            // Run by `cargo test` (CI): a smoke run that keeps the benchmark compiling and working.
            eprintln!(
                "not run by `cargo bench`: a smoke run with a tiny count; its figures mean nothing"
            );
            options.quick = true;
            options.rounds = 1;
            options.count = 2_000;
        } else if options.quick {
            options.count = 100_000;
        }
        if let Some(count) = count {
            options.count = count;
        }
        options
    }

    fn runs(&self, scenario: &str) -> bool {
        match &self.only {
            Some(only) => only.iter().any(|s| s == scenario),
            None => !self.quick || scenario == "consume",
        }
    }
}

fn main() {
    let options = Options::parse();
    if options.default_logging {
        kafka_runtime::cli::init_logging(&kafka_runtime::config::LoggingSettings::default());
    } else if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    since_start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = Broker::start();
        if let (Some(count), Some(topic)) = (options.memory, &options.topic) {
            memory_child(&broker, count, topic).await;
            return;
        }
        let mut report = Report::new(&broker.describe(), &options);
        eprintln!("broker: {}", broker.describe());
        let mut ratio = f64::NAN;
        if options.runs("consume") {
            ratio = consume(&broker, &options, 100, &mut report).await;
            if !options.quick {
                consume(&broker, &options, 1_000, &mut report).await;
            }
        }
        let mut parallel_ratio = f64::NAN;
        if options.runs("parallel") {
            parallel_ratio = parallel(&broker, &options, &mut report).await;
        }
        let mut batch_ratio = f64::NAN;
        if options.runs("batch") {
            batch_ratio = batch(&broker, &options, &mut report).await;
        }
        let mut transform_ratio = f64::NAN;
        if options.runs("transform") {
            transform_ratio = transform::run(&broker, &options, &mut report).await;
        }
        if options.runs("produce") {
            produce(&broker, &options, &mut report).await;
        }
        if options.runs("latency") {
            latency(&broker, &options, &mut report).await;
        }
        if options.runs("scaling") {
            scaling(&broker, &options, &mut report).await;
        }
        if options.runs("memory") {
            memory(&broker, &options, &mut report).await;
        }
        if options.runs("python") {
            python::run(&broker, &options, &mut report).await;
        }
        report.print();
        if let Some(path) = &options.json {
            report.write_json(path);
        }
        if options.runs("batch") {
            println!("ratio batch/raw: {batch_ratio:.3}");
        }
        if options.runs("transform") {
            println!("ratio send_to/raw: {transform_ratio:.3}");
        }
        if options.runs("parallel") {
            println!("ratio key/partition: {parallel_ratio:.1}");
        }
        if options.runs("consume") {
            println!("ratio listener/raw: {ratio:.3}");
        }
    });
}
