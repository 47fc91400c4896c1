//! The results table: printed as Markdown (pasted into BENCHMARKS.md) and written as JSON for
//! `benches/chart.py`.

use serde::Serialize;

use crate::Options;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub ratio: Option<(String, f64)>,
}

impl Row {
    pub fn new(name: &str, value: f64, unit: &str) -> Self {
        Row {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            ratio: None,
        }
    }

    pub fn with_ratio(mut self, what: &str, ratio: f64) -> Self {
        self.ratio = Some((what.to_owned(), ratio));
        self
    }
}

/// Every figure of one run, with what it ran on.
#[derive(Debug, Serialize)]
pub struct Report {
    pub broker: String,
    pub machine: String,
    pub records: usize,
    pub rounds: usize,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn new(broker: &str, options: &Options) -> Self {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load = load.split_whitespace().next().unwrap_or("?");
        Report {
            broker: broker.to_owned(),
            machine: format!("{cores} cores, load average {load} at start"),
            records: options.count,
            rounds: options.rounds,
            rows: Vec::new(),
        }
    }

    pub fn print(&self) {
        println!(
            "\nbroker: {}; machine: {}; {} records per consume run, median of {} interleaved rounds\n",
            self.broker, self.machine, self.records, self.rounds
        );
        println!("| scenario | value | unit | ratio |");
        println!("|---|---:|---|---|");
        for row in &self.rows {
            let ratio = row
                .ratio
                .as_ref()
                .map(|(what, ratio)| format!("{what} {ratio:.3}"))
                .unwrap_or_default();
            println!(
                "| {} | {:.0} | {} | {ratio} |",
                row.name, row.value, row.unit
            );
        }
        println!();
    }

    pub fn write_json(&self, path: &str) {
        match serde_json::to_string_pretty(self) {
            Ok(json) => {
                if let Err(error) = std::fs::write(path, json) {
                    eprintln!("cannot write {path}: {error}");
                }
            }
            Err(error) => eprintln!("cannot encode the report: {error}"),
        }
    }
}

/// The process's peak resident set (VmHWM), in KiB.
pub fn peak_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(f64::NAN)
}
