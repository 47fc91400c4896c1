//! An at-least-once sink: every record is appended to a ledger file (its partition, offset, key
//! and value, one line each) before it is acknowledged, so a crash at any point loses nothing —
//! what was appended but not yet committed is delivered, and appended, again. The reliability
//! tests run it as a child process and kill it with SIGKILL.
//!
//! With `LEDGER_BATCH=1` a batch listener does the same work: each batch of a partition's
//! records goes to the ledger in one write, and is committed when the handler returns `Ok` —
//! the shape of a sink that writes to a store in one call per batch.
//!
//! With `LEDGER_DEDUPE=1` it is an idempotent receiver (`dedupe = "header:event_id"`): the
//! ledger records events by the id in their `event_id` header (the line's last field), and is
//! itself the idempotency store — an id is processed when a whole line carries it, so a record
//! delivered again after a crash finds its line and is skipped: each event is in the ledger once.
//!
//! ```text
//! LEDGER_FILE=ledger.txt LEDGER_TOPIC=orders cargo run --example ledger
//! LEDGER_BATCH=1 LEDGER_FILE=ledger.txt LEDGER_TOPIC=orders cargo run --example ledger
//! LEDGER_DEDUPE=1 LEDGER_FILE=ledger.txt LEDGER_TOPIC=orders cargo run --example ledger
//! ```
//!
//! `LEDGER_TOPIC` / `LEDGER_GROUP` (or `ledger.topic` / `ledger.group` properties) name the topic
//! and group; the command line is `kafka_runtime::run`'s (`--config`, `--set`, ...).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use kafka_runtime::dedupe::{BoxFuture, StoreError};
use kafka_runtime::prelude::*;
use kafka_runtime::IdempotencyStore;

/// The append-only file. Each line goes to the operating system in one `write` before the record
/// is acknowledged: a killed process loses none of what it acknowledged (only the machine losing
/// power could). A kill can cut a large write short (a batch's lines): that tail was not
/// acknowledged, and the next run closes it off (see [`close_torn_line`]).
#[derive(Clone)]
struct Ledger(Arc<Mutex<File>>);

impl Ledger {
    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(line.as_bytes())
    }
}

#[kafka_listener(
    id = "ledger",
    topics = "${ledger.topic:ledger}",
    group = "${ledger.group:ledger}",
    ack_mode = "manual"
)]
async fn record(
    Payload(value): Payload<String>,
    key: Option<Key<String>>,
    metadata: Metadata,
    ack: Ack,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    let key = key.map_or_else(|| "-".to_owned(), |Key(key)| key);
    ledger.append(&format!(
        "{} {} {key} {value}\n",
        metadata.partition, metadata.offset
    ))?;
    ack.acknowledge();
    Ok(())
}

#[kafka_listener(
    id = "ledger-batch",
    topics = "${ledger.topic:ledger}",
    group = "${ledger.group:ledger}",
    auto_startup = false
)]
async fn batch(
    Batch(records): Batch<String>,
    State(ledger): State<Ledger>,
) -> Result<(), HandlerError> {
    let lines: String = records
        .iter()
        .map(|record| {
            let key = record.key_str().unwrap_or("-");
            let (partition, offset) = (record.metadata.partition, record.metadata.offset);
            format!("{partition} {offset} {key} {}\n", record.payload)
        })
        .collect();
    ledger.append(&lines)?;
    Ok(())
}

#[kafka_listener(
    id = "ledger-dedupe",
    topics = "${ledger.topic:ledger}",
    group = "${ledger.group:ledger}",
    dedupe = "header:event_id",
    auto_startup = false
)]
async fn deduplicated(
    headers: Headers,
    key: Option<Key<String>>,
    metadata: Metadata,
    State(ledger): State<Ledger>,
    State(ids): State<LedgerIds>,
) -> Result<(), HandlerError> {
    let id = headers
        .get("event_id")
        .map(String::from_utf8_lossy)
        .ok_or_else(|| HandlerError::new("an event without an `event_id` header"))?;
    let key = key.map_or_else(|| "-".to_owned(), |Key(key)| key);
    ledger.append(&format!(
        "{} {} {key} {id}\n",
        metadata.partition, metadata.offset
    ))?;
    ids.insert(id.as_bytes());
    Ok(())
}

/// The ids the ledger holds: the idempotency store of `LEDGER_DEDUPE=1`, read from the ledger at
/// startup and kept up to date by the handler (the ledger line is what survives a crash).
#[derive(Clone, Default)]
struct LedgerIds(Arc<Mutex<HashSet<Vec<u8>>>>);

impl LedgerIds {
    /// The ids of the whole lines of `ledger` (four fields; a torn line has five).
    fn read(ledger: &mut File) -> std::io::Result<Self> {
        let mut text = String::new();
        ledger.seek(SeekFrom::Start(0))?;
        ledger.read_to_string(&mut text)?;
        let ids = text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                (fields.len() == 4).then(|| fields[3].as_bytes().to_vec())
            })
            .collect();
        Ok(LedgerIds(Arc::new(Mutex::new(ids))))
    }

    fn insert(&self, id: &[u8]) {
        self.lock().insert(id.to_vec());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IdempotencyStore for LedgerIds {
    fn seen<'a>(&'a self, _: &'a str, id: &'a [u8]) -> BoxFuture<'a, Result<bool, StoreError>> {
        let seen = self.lock().contains(id);
        Box::pin(async move { Ok(seen) })
    }

    /// The handler's ledger line remembered it already.
    fn remember<'a>(&'a self, _: &'a str, _: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Ends a line a kill cut short with ` torn`, so that this run's first line does not join it and
/// readers can tell it from a whole line (whose value is its last of four fields).
fn close_torn_line(file: &mut File) -> std::io::Result<()> {
    if file.metadata()?.len() == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b" torn\n")?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let path = std::env::var("LEDGER_FILE").unwrap_or_else(|_| "ledger.txt".to_owned());
    let opened = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| close_torn_line(&mut file).map(|()| file));
    let mut file = match opened {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: cannot open the ledger {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mode = |name: &str| std::env::var_os(name).is_some_and(|value| value == "1");
    let listener = if mode("LEDGER_BATCH") {
        "ledger-batch"
    } else if mode("LEDGER_DEDUPE") {
        "ledger-dedupe"
    } else {
        "ledger"
    };
    let ids = if listener == "ledger-dedupe" {
        match LedgerIds::read(&mut file) {
            Ok(ids) => ids,
            Err(error) => {
                eprintln!("error: cannot read the ledger {path}: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        LedgerIds::default()
    };
    kafka_runtime::run_with(|app| {
        app.with_state(Ledger(Arc::new(Mutex::new(file))))
            .with_state(ids.clone())
            .with_idempotency_store(ids)
            .with_listeners([listener])
    })
}
