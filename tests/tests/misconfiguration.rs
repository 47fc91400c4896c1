//! The bad-configuration catalogue: each mistake fails fast, with a message that names the key
//! and where it came from (file, variable), and none hangs. Run as a user runs the service: the
//! `user-events` binary in a directory holding the bad file.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kafka_runtime::prelude::*;
use kafka_runtime::Config;

/// The longest any of these may take: the unreachable broker's 10 s connect timeout, plus slack.
const FAST: Duration = Duration::from_secs(15);

struct Case {
    name: &'static str,
    file: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    expected: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown key",
        file: Some("[kafka.listener]\nconcurency = 3\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.listener.concurency`",
            "unknown key",
            "`concurrency`",
        ],
    },
    Case {
        name: "wrong type",
        file: Some("[kafka.listener]\nconcurrency = \"three\"\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.listener.concurrency`",
            "expected u32",
        ],
    },
    Case {
        name: "negative concurrency",
        file: Some("[kafka.listener]\nconcurrency = -1\n"),
        env: &[],
        args: &["--check"],
        expected: &["application.toml", "key `kafka.listener.concurrency`", "-1"],
    },
    Case {
        name: "zero concurrency",
        file: Some("[kafka.listener]\nconcurrency = 0\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.listener.concurrency`",
            "at least 1",
        ],
    },
    Case {
        name: "unknown ack mode",
        file: Some("[kafka.listener]\nack-mode = \"sometimes\"\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.listener.ack-mode`",
            "manual_immediate",
        ],
    },
    Case {
        name: "auto-commit with manual acks",
        file: Some("[kafka.consumer]\nenable-auto-commit = true\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.consumer.enable-auto-commit`",
            "impossible",
        ],
    },
    Case {
        name: "malformed TOML",
        file: Some("[kafka.listener\nconcurrency = 3\n"),
        env: &[],
        args: &["--check"],
        expected: &["application.toml", "line 1"],
    },
    Case {
        name: "unreadable file",
        file: None,
        env: &[],
        args: &["--check", "--config", "/nonexistent/application.toml"],
        expected: &["cannot read configuration file /nonexistent/application.toml"],
    },
    Case {
        name: "bad environment value",
        file: None,
        env: &[("KAFKA_LISTENER_CONCURRENCY", "many")],
        args: &["--check"],
        expected: &[
            "environment variable KAFKA_LISTENER_CONCURRENCY",
            "kafka.listener.concurrency",
        ],
    },
    Case {
        name: "bad duration",
        file: Some("[kafka.listener]\nack-time = \"soon\"\n"),
        env: &[],
        args: &["--check"],
        expected: &["application.toml", "key `kafka.listener.ack-time`", "soon"],
    },
    Case {
        name: "Java key store",
        file: Some("[kafka.ssl]\ntrust-store-location = \"/etc/kafka/truststore.jks\"\n"),
        env: &[],
        args: &["--check"],
        expected: &[
            "application.toml",
            "key `kafka.ssl.trust-store-location`",
            "keytool",
        ],
    },
    Case {
        name: "management port out of range",
        file: Some("[management]\nport = 70000\n"),
        env: &[],
        args: &["--check"],
        expected: &["application.toml", "key `management.port`", "70000"],
    },
    Case {
        name: "unreachable bootstrap server",
        file: None,
        env: &[("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")],
        args: &[],
        expected: &["cannot reach Kafka at 127.0.0.1:9 within 10s"],
    },
];

fn run(case: &Case) -> (Output, Duration) {
    let dir = std::env::temp_dir().join(common::unique("misconfig"));
    std::fs::create_dir_all(&dir).expect("work dir");
    if let Some(text) = case.file {
        std::fs::write(dir.join("application.toml"), text).expect("config file");
    }
    let mut command = Command::new(common::example_binary());
    command
        .current_dir(&dir)
        .args(case.args)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("NO_COLOR", "1");
    for (key, value) in case.env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = command.output().expect("the service runs");
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(dir);
    (output, took)
}

#[test]
fn every_mistake_fails_fast_naming_the_key_and_its_source() {
    let mut table = Vec::new();
    for case in CASES {
        let (output, took) = run(case);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = format!("{stderr}{stdout}");
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}: exit code; said: {said}",
            case.name
        );
        for expected in case.expected {
            assert!(
                said.contains(expected),
                "{}: `{expected}` missing from: {said}",
                case.name
            );
        }
        assert!(took < FAST, "{}: took {took:?}", case.name);
        table.push(format!("| {} | {took:.1?} |", case.name));
    }
    eprintln!("{}", table.join("\n"));
}

#[kafka_listener(id = "groupless", topics = "t", auto_startup = false)]
async fn groupless(Payload(_value): Payload<String>) {}

#[kafka_listener(
    id = "topicless",
    topics = "${orders.topic}",
    group = "g",
    auto_startup = false
)]
async fn topicless(Payload(_value): Payload<String>) {}

#[test]
fn a_listener_without_group_or_topic_is_refused_at_check() {
    for (listener, expected) in [
        ("groupless", ["listener `groupless`", "group"]),
        ("topicless", ["listener `topicless`", "orders.topic"]),
    ] {
        let started = Instant::now();
        let error = KafkaApplication::new(Config::default())
            .with_listeners([listener])
            .check()
            .expect_err("refused");
        let message = error.to_string();
        for piece in expected {
            assert!(
                message.contains(piece),
                "{listener}: `{piece}` missing from: {message}"
            );
        }
        assert!(started.elapsed() < FAST);
    }
}
