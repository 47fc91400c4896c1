//! Scenario 3 and the Python half of scenario 4: the seed's Python client and confluent-kafka on
//! the same broker and the same kind of records, from the venv `scripts/python-env.sh bench` makes.

use std::path::Path;

use crate::report::{Report, Row};
use crate::{produce_backlog, unique, Broker, Options};

/// Runs `peers.py` with `args`; its records per second.
fn peer(python: &str, args: &[&str]) -> f64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/peers.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("result ")?.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "peers.py {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

fn listener_rate(report: &Report) -> Option<f64> {
    report
        .rows
        .iter()
        .find(|row| row.name.starts_with("consume 100 B: #[kafka_listener]"))
        .map(|row| row.value)
}

pub async fn run(broker: &Broker, options: &Options, report: &mut Report) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::process::Command::new(root.join("scripts/python-env.sh"))
        .arg("bench")
        .output()
        .expect("scripts/python-env.sh runs");
    assert!(
        venv.status.success(),
        "the Python venv: {}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_owned();
    let bootstrap = broker.bootstrap();
    let ours = listener_rate(report);

    // The seed commits after every record (~1k records/s): a smaller backlog keeps it short.
    let count = broker.capacity(options.count, 100);
    let seed_count = count.min(20_000);
    let topic = broker.topic("python").await;
    produce_backlog(bootstrap, &topic, count, 100);
    let seed = peer(
        &python,
        &[
            "seed-consume",
            bootstrap,
            &topic,
            &format!("seed-{}", unique()),
            &seed_count.to_string(),
        ],
    );
    let mut row = Row::new(
        "consume 100 B: the seed's Python consumer (3)",
        seed,
        "msg/s",
    );
    if let Some(ours) = ours {
        row = row.with_ratio("listener/this", ours / seed);
    }
    report.rows.push(row);
    let confluent = peer(
        &python,
        &[
            "confluent-consume",
            bootstrap,
            &topic,
            &format!("confluent-{}", unique()),
            &count.to_string(),
        ],
    );
    let mut row = Row::new(
        "consume 100 B: Python confluent-kafka (3)",
        confluent,
        "msg/s",
    );
    if let Some(ours) = ours {
        row = row.with_ratio("listener/this", ours / confluent);
    }
    report.rows.push(row);

    let topic = broker.topic("python-produce").await;
    let produced = peer(
        &python,
        &["seed-produce", bootstrap, &topic, &seed_count.to_string()],
    );
    report.rows.push(Row::new(
        "produce 100 B: the seed's Python send_batch (4)",
        produced,
        "msg/s",
    ));
}
