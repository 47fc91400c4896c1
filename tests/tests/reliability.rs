//! At-least-once under the faults of production, counted record by record: the `ledger` example
//! (append each record to a file, then acknowledge) killed with SIGKILL at random points and
//! restarted; nothing may be lost, and duplicates may only come from records not yet committed
//! at the kill.
//!
//! `RELIABILITY_SOAK=1` runs the long version (more records, more rounds) for manual runs. On a
//! real broker (`KAFKA_BOOTSTRAP_SERVERS`) the kill tests run 3 rounds.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Cluster;

const PARTITIONS: i32 = 3;

fn soak() -> bool {
    std::env::var("RELIABILITY_SOAK").is_ok_and(|v| v == "1")
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so that a
/// failing run can be told apart from others.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Produces records `id-<n>` (also their `event_id` header) with 97 keys.
fn produce(bootstrap: &str, topic: &str, ids: std::ops::Range<usize>) {
    let producer = idempotent_producer(bootstrap);
    send(&producer, topic, ids, Record::Valid);
    flush(&producer);
}

/// A producer that writes no record twice, even when the broker fails a send it took (the storm
/// troubles it): the ledger would count the producer's duplicates as ours.
fn idempotent_producer(bootstrap: &str) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer")
}

fn flush(producer: &rdkafka::producer::BaseProducer) {
    use rdkafka::producer::Producer;
    producer
        .flush(Duration::from_secs(60))
        .expect("records are produced");
}

/// What [`send`] writes.
#[derive(Clone, Copy)]
enum Record {
    /// `id-<n>`, in the payload and the `event_id` header.
    Valid,
    /// `poison-<n>` in the `event_id` header, and a payload that is not UTF-8: the ledger's
    /// `Payload<String>` refuses it, so it goes to the dead-letter topic.
    Poison,
}

/// Sends records `ids` (keys `key-<n % 97>`) without waiting for their delivery.
fn send(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    ids: std::ops::Range<usize>,
    kind: Record,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::BaseRecord;
    for n in ids {
        let key = format!("key-{}", n % 97);
        let (id, payload) = match kind {
            Record::Valid => (format!("id-{n}"), format!("id-{n}").into_bytes()),
            Record::Poison => (
                format!("poison-{n}"),
                [&[0xff, 0xfe][..], b"poison"].concat(),
            ),
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "event_id",
            value: Some(&id),
        });
        let record = BaseRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        common::send_waiting(producer, record);
    }
}

/// One line of the ledger: (partition, offset, key, value).
fn ledger(path: &Path) -> Vec<(i32, i64, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        // A line cut by the kill (the ledger marks it ` torn` when it starts again) is not a
        // record the service acknowledged. Seen: a batch's write cut mid-line, joined by the next
        // run's first line, hid that line's record.
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let partition = parts.next()?.parse().ok()?;
            let offset = parts.next()?.parse().ok()?;
            let key = parts.next()?.to_owned();
            let value = parts.next()?.to_owned();
            parts
                .next()
                .is_none()
                .then_some((partition, offset, key, value))
        })
        .collect()
}

/// The ledger service, as a child process on the test's cluster.
struct Service {
    /// Environment of the ledger's runs: which listener, which ordering.
    mode: Mode,
    dir: PathBuf,
    ledger: PathBuf,
    bootstrap: String,
    topic: String,
    group: String,
}

impl Service {
    fn new(cluster: &Cluster, topic: &str, mode: Mode) -> Self {
        Self::configured(cluster, topic, mode, "")
    }

    /// The service with `extra` TOML after its own configuration.
    fn configured(cluster: &Cluster, topic: &str, mode: Mode, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(common::unique("ledger"));
        std::fs::create_dir_all(&dir).expect("work dir");
        // A killed member holds its partitions until its session times out: keep that short
        // (6 s is the smallest a broker accepts by default).
        std::fs::write(
            dir.join("application.toml"),
            format!(
                "[kafka.listener]\nconcurrency = 1\n\
                 [kafka.consumer.properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000\n\
                 {extra}"
            ),
        )
        .expect("config");
        Service {
            mode,
            ledger: dir.join("ledger.txt"),
            dir,
            bootstrap: cluster.bootstrap().to_owned(),
            topic: topic.to_owned(),
            group: common::unique("ledger-group"),
        }
    }

    fn start(&self) -> Child {
        self.start_with_ledger(&self.ledger)
    }

    /// A member of the same group writing to a ledger of its own, its warnings and errors next to
    /// it (`<ledger>.log`).
    fn start_with_ledger(&self, ledger: &Path) -> Child {
        let log = std::fs::File::create(ledger.with_extension("log")).expect("the member's log");
        Command::new(common::example("ledger"))
            .current_dir(&self.dir)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("LEDGER_TOPIC", &self.topic)
            .env("LEDGER_GROUP", &self.group)
            .env("LEDGER_FILE", ledger)
            .envs(self.mode.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("the member's log"))
            .stderr(log)
            .spawn()
            .expect("ledger service starts")
    }

    fn distinct(&self) -> usize {
        ledger(&self.ledger)
            .into_iter()
            .map(|(_, _, _, value)| value)
            .collect::<HashSet<String>>()
            .len()
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal}");
}

/// Extra environment of the ledger's runs.
type Mode = &'static [(&'static str, &'static str)];
const RECORDS: Mode = &[];
const BATCHES: Mode = &[("LEDGER_BATCH", "1")];
const BY_KEY: Mode = &[("KAFKA_LISTENER_ORDERING", "key")];
const DEDUPE: Mode = &[("LEDGER_DEDUPE", "1")];

#[test]
fn kill_9_at_random_points_loses_nothing() {
    kill_9_at_random_points(RECORDS, 10);
}

#[test]
fn kill_9_in_the_middle_of_batches_loses_nothing() {
    kill_9_at_random_points(BATCHES, 10);
}

#[test]
fn kill_9_with_key_ordering_loses_nothing() {
    kill_9_at_random_points(BY_KEY, 5);
}

/// The idempotent receiver with a store that survives the process (the ledger itself): records
/// delivered again after a kill are skipped, so the ledger holds each event once.
#[test]
fn kill_9_with_an_idempotent_receiver_writes_each_record_once() {
    kill_9_at_random_points(DEDUPE, 10);
}

/// Kills the ledger (in `mode`) with SIGKILL in the middle of a backlog, again and again, then
/// drains it: every record is in the ledger, and committed.
fn kill_9_at_random_points(mode: Mode, rounds: usize) {
    let cluster = Cluster::start();
    let (records, rounds) = if soak() {
        (1_000_000, 50)
    } else if cluster.embedded().is_none() {
        // On a real broker each restart waits out a session and a join: fewer rounds (for runs
        // by hand against a cluster; CI runs these on the embedded cluster only, see
        // RELIABILITY.md for what tansu does with them).
        (30_000, rounds.min(3))
    } else {
        (rounds * 10_000, rounds)
    };
    let topic = cluster.topic("ledger", PARTITIONS);
    produce(cluster.bootstrap(), &topic, 0..records);
    let service = Service::new(&cluster, &topic, mode);
    let mut random = Random::new();
    // The service handles a few thousand records between reaching a target and the kill: small
    // steps keep every kill in the middle of the stream.
    let step = records / (rounds * 6);
    let mut kills = Vec::new();

    let mut duplicates_per_round = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = service.start();
        // Kill once the ledger holds a random number more distinct records.
        let target =
            (service.distinct() + step / 2 + random.below(step as u64) as usize).min(records - 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        while service.distinct() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(&child, "-KILL");
        let status = child.wait().expect("the service dies");
        kills.push(service.distinct());
        assert!(!status.success(), "round {round}: SIGKILL ends the process");

        // What the next run will deliver again: ledger lines at or past the committed offsets.
        let committed = cluster.committed(&service.group, &topic, PARTITIONS);
        acknowledged_before_committed(&ledger(&service.ledger), &committed, round);
        duplicates_per_round.push(uncommitted(&ledger(&service.ledger), &committed));
    }

    // A last run drains the rest, then stops gracefully. It is waited for until it catches
    // SIGTERM even when the ledger is complete already: a SIGTERM before the service installed
    // its handler would end it like any process (seen once the dedupe mode read the ledger at
    // startup).
    let mut child = service.start();
    wait_until_it_handles_sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(300);
    while service.distinct() < records && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "-TERM");
    let status = child.wait().expect("the service stops");
    assert!(
        status.success(),
        "the last run exits 0 on SIGTERM: {status}"
    );

    let lines = ledger(&service.ledger);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, _, value) in &lines {
        *seen.entry(value.as_str()).or_default() += 1;
    }
    let lost: Vec<String> = (0..records)
        .map(|n| format!("id-{n}"))
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    let duplicates = lines.len() - seen.len();
    let max_duplicates = duplicates_per_round.iter().copied().max().unwrap_or(0);
    eprintln!(
        "kill -9 ({mode:?}): {rounds} rounds, {records} records, {} lost, {duplicates} duplicates \
         (at most {max_duplicates} uncommitted at a kill), {:.0?} in all; killed at {kills:?}",
        lost.len(),
        started.elapsed()
    );
    assert!(
        lost.is_empty(),
        "lost {} records, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(
        cluster.committed_total(&service.group, &topic, PARTITIONS),
        records as i64,
        "everything is committed at the end"
    );
    assert!(
        duplicates <= duplicates_per_round.iter().sum::<usize>(),
        "duplicates ({duplicates}) only from records uncommitted at a kill ({duplicates_per_round:?})"
    );
    if mode == DEDUPE {
        assert_eq!(
            duplicates, 0,
            "the idempotent receiver wrote no record twice ({duplicates_per_round:?} were uncommitted at the kills)"
        );
    }
    let _ = std::fs::remove_dir_all(&service.dir);
}

/// Commits proven against acknowledgments, from outside: the ledger gets a record's line before
/// the record is acknowledged, so every offset below a partition's committed offset (read by an
/// independent client after the kill) must have its line. A commit past a record not
/// acknowledged would show here as a hole, long before it shows as a loss.
fn acknowledged_before_committed(
    lines: &[(i32, i64, String, String)],
    committed: &[Option<i64>],
    round: usize,
) {
    for (partition, committed) in committed.iter().enumerate() {
        let Some(committed) = *committed else {
            continue;
        };
        let held: HashSet<i64> = lines
            .iter()
            .filter(|(p, ..)| usize::try_from(*p).is_ok_and(|p| p == partition))
            .map(|(_, offset, ..)| *offset)
            .collect();
        let holes: Vec<i64> = (0..committed)
            .filter(|offset| !held.contains(offset))
            .take(10)
            .collect();
        assert!(
            holes.is_empty(),
            "round {round}: partition {partition} committed up to {committed}, but offsets \
             {holes:?} were never acknowledged"
        );
    }
}

/// Produces `count` records over about `spread`, from a thread of its own.
fn produce_slowly(
    bootstrap: &str,
    topic: &str,
    count: usize,
    spread: Duration,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let chunks = 50;
        for chunk in 0..chunks {
            produce(
                &bootstrap,
                &topic,
                (chunk * count / chunks)..((chunk + 1) * count / chunks),
            );
            std::thread::sleep(spread / chunks as u32);
        }
    })
}

#[test]
fn members_joining_and_leaving_under_load_lose_nothing_and_keep_key_order() {
    members_joining_and_leaving(RECORDS, 30_000);
}

#[test]
fn members_joining_and_leaving_with_key_ordering_keep_key_order() {
    members_joining_and_leaving(BY_KEY, 15_000);
}

/// Three members (in `mode`) join one at a time while records flow, then leave one at a time:
/// nothing is lost, and within each member each key's records come in the order produced.
fn members_joining_and_leaving(mode: Mode, records: usize) {
    let cluster = Cluster::start();
    let records = if soak() { records * 10 } else { records };
    let topic = cluster.topic("rebalance", 6);
    let service = Service::new(&cluster, &topic, mode);
    let ledgers: Vec<PathBuf> = (0..3)
        .map(|n| service.dir.join(format!("ledger-{n}.txt")))
        .collect();
    let producing = produce_slowly(
        cluster.bootstrap(),
        &topic,
        records,
        Duration::from_secs(20),
    );

    // Join one at a time while records flow ...
    let mut members = Vec::new();
    for ledger in &ledgers {
        members.push(service.start_with_ledger(ledger));
        std::thread::sleep(Duration::from_secs(4));
    }
    producing.join().expect("producer thread");
    // ... and leave one at a time (SIGTERM: a graceful leave, so the others take over).
    while members.len() > 1 {
        std::thread::sleep(Duration::from_secs(3));
        let mut member = members.remove(0);
        signal(&member, "-TERM");
        assert!(
            member.wait().expect("member exits").success(),
            "a leaving member exits 0"
        );
    }
    let all =
        || -> Vec<(i32, i64, String, String)> { ledgers.iter().flat_map(|l| ledger(l)).collect() };
    let deadline = Instant::now() + Duration::from_secs(120);
    while all()
        .into_iter()
        .map(|line| line.3)
        .collect::<HashSet<String>>()
        .len()
        < records
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = members.remove(0);
    signal(&last, "-TERM");
    let mut last = last;
    assert!(last.wait().expect("member exits").success());

    let lines = all();
    let distinct: HashSet<&str> = lines.iter().map(|l| l.3.as_str()).collect();
    let lost = records - distinct.len();
    let duplicates = lines.len() - distinct.len();
    let handled: Vec<usize> = ledgers.iter().map(|l| ledger(l).len()).collect();
    eprintln!(
        "rebalance under load ({mode:?}): 3 members, {records} records, {lost} lost, {duplicates} duplicates, handled per member {handled:?}"
    );
    assert_eq!(lost, 0, "every record handled by some member");
    assert!(
        handled.iter().all(|h| *h > 0),
        "every member took part: {handled:?}"
    );
    keys_in_order_within_each_member(&ledgers, &lines);
    assert_eq!(
        cluster.committed_total(&service.group, &topic, 6),
        records as i64,
        "everything is committed at the end"
    );
    let _ = std::fs::remove_dir_all(&service.dir);
}

/// Within each member (a ledger each), each key's records arrive in the order they were produced:
/// a record older than one already handled must be a redelivery (handled before, here or by the
/// member that had the partition), never a record that skipped ahead of it.
fn keys_in_order_within_each_member(ledgers: &[PathBuf], lines: &[(i32, i64, String, String)]) {
    let mut times_handled: BTreeMap<&str, usize> = BTreeMap::new();
    for line in lines {
        *times_handled.entry(line.3.as_str()).or_default() += 1;
    }
    for (member, path) in ledgers.iter().enumerate() {
        let mut newest: BTreeMap<String, u64> = BTreeMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (_, _, key, value) in ledger(path) {
            let id: u64 = value.trim_start_matches("id-").parse().expect("an id");
            let previous = newest.entry(key.clone()).or_insert(id);
            let redelivered = seen.contains(&value) || times_handled.get(value.as_str()) > Some(&1);
            assert!(
                id >= *previous || redelivered,
                "member {member}: key {key} went back from id {previous} to {id}, which was not a redelivery"
            );
            *previous = (*previous).max(id);
            seen.insert(value);
        }
    }
}

/// A member of the storm: its process and the ledger it writes. A member still running when the
/// test ends (a failed assertion) is killed, not left behind.
struct Member {
    child: Child,
    ledger: PathBuf,
}

impl Member {
    /// Whether it has installed its SIGTERM handler: a SIGTERM sooner would end it like any
    /// process, not gracefully.
    fn settled(&self) -> bool {
        handles_sigterm(&self.child)
    }

    /// Stops it with SIGTERM, which it must survive to exit 0, within the shutdown's bounds.
    fn leave(mut self) {
        wait_until_it_handles_sigterm(&self.child);
        signal(&self.child, "-TERM");
        let status = exit_within(&mut self.child, Duration::from_secs(60));
        assert!(status.success(), "a leaving member exits 0: {status}");
    }

    /// Kills it with SIGKILL: what it handled past its partitions' committed offsets (read once
    /// it is dead, while its session still holds them) is what its successors deliver again.
    fn die(mut self, cluster: &Cluster, service: &Service) -> usize {
        signal(&self.child, "-KILL");
        exit_within(&mut self.child, Duration::from_secs(30));
        let committed = cluster.committed(&service.group, &service.topic, 6);
        uncommitted(&ledger(&self.ledger), &committed)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `child` catches SIGTERM yet (Linux: bit 15 of `SigCgt` in `/proc/<pid>/status`).
fn handles_sigterm(child: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

/// Waits (up to 30 s) until `child` catches SIGTERM, so that a SIGTERM stops it gracefully.
fn wait_until_it_handles_sigterm(child: &Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handles_sigterm(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit; fails the test (killing it) if it takes longer than `within`.
fn exit_within(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} still running after {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many ledger `lines` are at or past their partition's `committed` offset: handled, not
/// yet committed.
fn uncommitted(lines: &[(i32, i64, String, String)], committed: &[Option<i64>]) -> usize {
    lines
        .iter()
        .filter(|(partition, offset, ..)| {
            usize::try_from(*partition)
                .ok()
                .and_then(|p| committed.get(p))
                .is_some_and(|c| *offset >= c.unwrap_or(0))
        })
        .count()
}

#[test]
fn a_rebalance_storm_of_six_members_loses_nothing_and_keeps_key_order() {
    if soak() {
        rebalance_storm(Duration::from_secs(600), 300_000);
    } else {
        rebalance_storm(Duration::from_secs(60), 30_000);
    }
}

/// What happened in a storm.
#[derive(Default)]
struct Storm {
    joins: usize,
    leaves: usize,
    kills: usize,
    faults: usize,
    uncommitted_at_kills: usize,
}

/// For `storm`, up to six members of one group (processes) join, leave (SIGTERM) and die
/// (SIGKILL) at random while `records` are produced, one in a thousand of them poison, and on the
/// embedded cluster the broker is in trouble for 2 s every 20 s ([`broker_trouble`]). After every leave the group's
/// commits are checked against what the members acknowledged; at the end every record is in a
/// ledger or the dead-letter topic, each key in order within each member, all committed.
fn rebalance_storm(storm: Duration, records: usize) {
    let cluster = Cluster::start();
    let topic = cluster.topic("storm", 6);
    let dead_letters = format!("{topic}.DLT");
    cluster.kit().create_topic(&dead_letters, 6);
    let service = Service::configured(
        &cluster,
        &topic,
        RECORDS,
        "[kafka.listener.error-handler]\nrecoverer = \"dead-letter\"\n",
    );
    eprintln!("members' ledgers and logs in {}", service.dir.display());
    let poison = records / 1000;
    let producing = produce_during(&cluster, &topic, storm, (records, poison));
    let mut ledgers = Vec::new();
    let (members, happened) = storm_of_members(&cluster, &service, storm, &mut ledgers);
    producing.join().expect("producer thread");

    // The members left drain the rest.
    let drained = Instant::now();
    let deadline = drained + Duration::from_secs(240);
    let everything = (records + poison) as i64;
    while cluster.committed_total(&service.group, &topic, 6) < everything
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let recovery = drained.elapsed();
    members.into_iter().for_each(Member::leave);

    let lines: Vec<_> = ledgers.iter().flat_map(|l| ledger(l)).collect();
    let distinct: HashSet<&str> = lines.iter().map(|l| l.3.as_str()).collect();
    let lost = records - distinct.len();
    let duplicates = lines.len() - distinct.len();
    let poisoned: HashSet<String> = dead_lettered(cluster.bootstrap(), &dead_letters)
        .into_iter()
        .map(|(.., id)| id)
        .collect();
    let Storm {
        joins,
        leaves,
        kills,
        faults,
        uncommitted_at_kills,
    } = happened;
    // Redeliveries come from kills, and on the mock from revoked members' commits it refuses
    // while the group is joining (REBALANCE_IN_PROGRESS, in the members' logs; Kafka's
    // coordinator takes them while a rebalance is being prepared): reported, not bounded.
    eprintln!(
        "| a rebalance storm: {joins} joins, {leaves} leaves (SIGTERM), {kills} kills (SIGKILL), \
         {faults} spells of broker trouble in {storm:?}, up to 6 members | {records} records + \
         {poison} poison | {lost} lost, {} of {poison} poison dead-lettered | {duplicates} duplicates \
         ({uncommitted_at_kills} uncommitted at the kills) | drained and committed {recovery:.1?} \
         after the storm |",
        poisoned.len()
    );
    assert_eq!(lost, 0, "every record handled by some member");
    assert_eq!(poisoned.len(), poison, "every poison record dead-lettered");
    keys_in_order_within_each_member(&ledgers, &lines);
    assert_eq!(
        cluster.committed_total(&service.group, &topic, 6),
        everything,
        "everything is committed at the end"
    );
    let _ = std::fs::remove_dir_all(&service.dir);
}

/// Produces `records` valid and `poison` poison records evenly over `storm`, from a thread.
fn produce_during(
    cluster: &Cluster,
    topic: &str,
    storm: Duration,
    (records, poison): (usize, usize),
) -> std::thread::JoinHandle<()> {
    let began = Instant::now();
    let (bootstrap, topic) = (cluster.bootstrap().to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let producer = idempotent_producer(&bootstrap);
        let chunks = 100;
        for chunk in 0..chunks {
            let share = |count| (chunk * count / chunks)..((chunk + 1) * count / chunks);
            send(&producer, &topic, share(records), Record::Valid);
            send(&producer, &topic, share(poison), Record::Poison);
            let next = began + storm * (chunk + 1) as u32 / chunks as u32;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        flush(&producer);
    })
}

/// Two seconds of a troubled broker: answers 500 ms late, 3 commits refused (REQUEST_TIMED_OUT),
/// 3 fetches refused (NOT_LEADER_OR_FOLLOWER). Not the broker down: librdkafka's mock aborts
/// the whole process (`rd_kafka_mock_cgrp_classic_member_add: Assertion '!member->resp'`) when a
/// member joins again on a new connection while its earlier JoinGroup is still unanswered, which
/// a broker going away in the middle of a storm's joins does now and then (seen once in CI).
fn broker_trouble(cluster: &Cluster) {
    use kafka_runtime::test::{BrokerError, Request};
    let faults = cluster.kit().faults();
    faults.round_trip_time(Duration::from_millis(500));
    faults.fail_next(Request::OffsetCommit, 3, BrokerError::RequestTimedOut);
    faults.fail_next(Request::Fetch, 3, BrokerError::NotLeaderOrFollower);
    std::thread::sleep(Duration::from_secs(2));
    faults.round_trip_time(Duration::ZERO);
    faults.clear(Request::OffsetCommit);
    faults.clear(Request::Fetch);
}

/// The storm itself: joins, leaves, kills and broker trouble at random for `storm`, the group's
/// commits checked after each leave or kill. Gives the members still running; `ledgers` gets
/// every member's ledger.
fn storm_of_members(
    cluster: &Cluster,
    service: &Service,
    storm: Duration,
    ledgers: &mut Vec<PathBuf>,
) -> (Vec<Member>, Storm) {
    const MEMBERS: usize = 6;
    let mut happened = Storm::default();
    let join = |ledgers: &mut Vec<PathBuf>| {
        let ledger = service.dir.join(format!("ledger-{}.txt", ledgers.len()));
        ledgers.push(ledger.clone());
        Member {
            child: service.start_with_ledger(&ledger),
            ledger,
        }
    };
    let mut random = Random::new();
    let mut members: Vec<Member> = (0..3).map(|_| join(ledgers)).collect();
    let began = Instant::now();
    let mut next_fault = began + Duration::from_secs(20);
    while began.elapsed() < storm {
        std::thread::sleep(Duration::from_millis(500 + random.below(2_500)));
        if cluster.embedded().is_some() && Instant::now() >= next_fault {
            broker_trouble(cluster);
            happened.faults += 1;
            next_fault += Duration::from_secs(20);
            continue;
        }
        if members.len() < 2 || (members.len() < MEMBERS && random.below(2) == 0) {
            members.push(join(ledgers));
            continue;
        }
        let ready: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].settled())
            .collect();
        let Some(&index) = ready.get(random.below(ready.len().max(1) as u64) as usize) else {
            continue;
        };
        let member = members.remove(index);
        if random.below(4) == 0 {
            happened.uncommitted_at_kills += member.die(cluster, service);
            happened.kills += 1;
        } else {
            member.leave();
            happened.leaves += 1;
        }
        // Commits proven against acknowledgments: the ledgers and the dead letters, read after
        // the commits, hold every offset below them.
        let committed = cluster.committed(&service.group, &service.topic, 6);
        let mut acknowledged: Vec<_> = ledgers.iter().flat_map(|l| ledger(l)).collect();
        acknowledged.extend(dead_lettered(
            cluster.bootstrap(),
            &format!("{}.DLT", service.topic),
        ));
        acknowledged_before_committed(&acknowledged, &committed, happened.leaves + happened.kills);
    }
    happened.joins = ledgers.len();
    (members, happened)
}

/// What dead-letter topic `topic` holds so far, as ledger lines: each record's original
/// partition and offset (Spring's `kafka_dlt-original-*` headers), key and `event_id`.
fn dead_lettered(bootstrap: &str, topic: &str) -> Vec<(i32, i64, String, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", common::unique("dead-letter-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), common::PATIENCE)
        .expect("dead-letter topic metadata");
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let partition = i32::try_from(partition).expect("partition");
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let (mut ended, mut lines) = (HashSet::new(), Vec::new());
    let deadline = Instant::now() + common::PATIENCE;
    while ended.len() < partitions {
        assert!(Instant::now() < deadline, "{topic} read to its end in time");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let message = message.detach();
                let number = |name: &str| common::header(&message, name).map(<[u8]>::to_vec);
                let partition = number("kafka_dlt-original-partition")
                    .and_then(|b| Some(i32::from_be_bytes(b.try_into().ok()?)))
                    .expect("the original partition");
                let offset = number("kafka_dlt-original-offset")
                    .and_then(|b| Some(i64::from_be_bytes(b.try_into().ok()?)))
                    .expect("the original offset");
                let text = |name| {
                    number(name)
                        .map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
                };
                let key = message
                    .key()
                    .map_or_else(String::new, |k| String::from_utf8_lossy(k).into_owned());
                lines.push((partition, offset, key, text("event_id")));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(error)) => panic!("cannot read {topic}: {error}"),
            None => {}
        }
    }
    lines
}
