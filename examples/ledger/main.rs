//! An at-least-once sink: every record is appended to a ledger file (its partition, offset, key
//! and value, one line each) before it is acknowledged, so a crash at any point loses nothing —
//! what was appended but not yet committed is delivered, and appended, again. The reliability
//! tests run it as a child process and kill it with SIGKILL.
//!
//! With `LEDGER_BATCH=1` a batch listener does the same work: each batch of a partition's
//! records goes to the ledger in one write, and is committed when the handler returns `Ok` —
//! the shape of a sink that writes to a store in one call per batch.
//!
//! ```text
//! LEDGER_FILE=ledger.txt LEDGER_TOPIC=orders cargo run --example ledger
//! LEDGER_BATCH=1 LEDGER_FILE=ledger.txt LEDGER_TOPIC=orders cargo run --example ledger
//! ```
//!
//! `LEDGER_TOPIC` / `LEDGER_GROUP` (or `ledger.topic` / `ledger.group` properties) name the topic
//! and group; the command line is `kafka_runtime::run`'s (`--config`, `--set`, ...).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use kafka_runtime::prelude::*;

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
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: cannot open the ledger {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let batch = std::env::var_os("LEDGER_BATCH").is_some_and(|value| value == "1");
    let listener = if batch { "ledger-batch" } else { "ledger" };
    kafka_runtime::run_with(|app| {
        app.with_state(Ledger(Arc::new(Mutex::new(file))))
            .with_listeners([listener])
    })
}
