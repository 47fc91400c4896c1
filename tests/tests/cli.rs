//! The service's command line, run as a user runs it: the `user-events` example binary with
//! `--check`, `--print-config`, `--profile`, `--set` and environment overrides.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the example in a fresh directory holding `files`.
fn run(files: &[(&str, &str)], env: &[(&str, &str)], args: &[&str]) -> (PathBuf, Output) {
    let dir = std::env::temp_dir().join(common::unique("cli"));
    std::fs::create_dir_all(&dir).expect("work dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("config file");
    }
    let mut command = Command::new(common::example_binary());
    command
        .current_dir(&dir)
        .args(args)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("example runs");
    (dir, output)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_bundled_seed_configuration() {
    let (_, output) = run(&[], &[], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "listener handle_user_event: topics [\"user-events\"], group my-consumer-group, \
         concurrency 3, ack-mode manual\n  \
         errors: up to 4 deliveries, exponential back-off 500ms x2 up to 5s, \
         then dead-letter to user-events.DLT\nconfiguration OK\n"
    );
}

#[test]
fn check_shows_a_listener_s_retry_topics() {
    let config =
        "[kafka.retry.topic]\nenabled = true\nattempts = 3\ndelay = \"2s\"\nmultiplier = 3.0\n";
    let (_, output) = run(&[("application.toml", config)], &[], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "  retry topics: user-events-retry-0 after 2s, user-events-retry-1 after 6s, then user-events-dlt\n"
        ),
        "{stdout}"
    );
}

#[test]
fn check_names_the_file_the_key_and_what_was_expected() {
    let (dir, output) = run(
        &[(
            "application.toml",
            "[kafka.listener]\nconcurrency = \"three\"\n",
        )],
        &[],
        &["--check"],
    );
    assert_eq!(output.status.code(), Some(1));
    let path = dir.join("application.toml");
    assert_eq!(
        text(&output.stderr),
        format!(
            "error: {}: key `kafka.listener.concurrency`: invalid type: found string \"three\", expected u32\n",
            Path::new("application.toml").display()
        ),
        "in {}",
        path.display()
    );
}

#[test]
fn check_rejects_a_listener_override_for_no_listener() {
    let (_, output) = run(
        &[(
            "application.toml",
            "[kafka.listeners.no_such.error-handler]\nmax-attempts = 3\n",
        )],
        &[],
        &["--check"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("[kafka.listeners.\"no_such\"] names no listener"),
        "{stderr}"
    );
    assert!(stderr.contains("handle_user_event"), "{stderr}");
}

#[test]
fn profile_environment_and_command_line_apply_in_order_with_their_sources() {
    let base = "[kafka]\nclient-id = \"base\"\n[kafka.consumer]\ngroup-id = \"base\"\n\
                [kafka.listener]\nconcurrency = 1\nack-count = 2\n";
    let prod = "[kafka.consumer]\ngroup-id = \"prod\"\n[kafka.listener]\nconcurrency = 2\n";
    let (_, output) = run(
        &[("application.toml", base), ("application-prod.toml", prod)],
        &[
            ("KAFKA_LISTENER_CONCURRENCY", "3"),
            ("MANAGEMENT_PORT", "8081"),
            ("LOGGING_FORMAT", "json"),
        ],
        &[
            "--profile",
            "prod",
            "--set",
            "kafka.listener.ack-count=5",
            "--print-config",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    assert_eq!(
        line("kafka.client-id"),
        "kafka.client-id = \"base\"    # application.toml"
    );
    assert_eq!(
        line("kafka.consumer.group-id"),
        "kafka.consumer.group-id = \"prod\"    # application-prod.toml"
    );
    assert_eq!(
        line("kafka.listener.concurrency"),
        "kafka.listener.concurrency = 3    # environment variable KAFKA_LISTENER_CONCURRENCY"
    );
    assert_eq!(
        line("kafka.listener.ack-count"),
        "kafka.listener.ack-count = 5    # command line --set"
    );
    assert_eq!(
        line("management.port"),
        "management.port = 8081    # environment variable MANAGEMENT_PORT"
    );
    assert_eq!(
        line("logging.format"),
        "logging.format = \"json\"    # environment variable LOGGING_FORMAT"
    );
}

#[test]
fn print_config_never_shows_a_secret() {
    let config =
        "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"sasl.username\" = \"app\"\n";
    let (_, output) = run(&[("application.toml", config)], &[], &["--print-config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("kafka.properties.sasl.password = \"<redacted>\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("kafka.properties.sasl.username = \"app\""),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2") && !text(&output.stderr).contains("hunter2"));
}

#[test]
fn librdkafka_properties_are_set_from_the_environment_and_the_command_line() {
    let (_, output) = run(
        &[("application.toml", "[kafka.listener]\nconcurrency = 1\n")],
        &[("KAFKA_CONSUMER_PROPERTIES_SESSION_TIMEOUT_MS", "6000")],
        &[
            "--set",
            "kafka.producer.properties.\"linger.ms\"=20",
            "--set",
            "kafka.properties.fetch.max.bytes=1048576",
            "--print-config",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "kafka.consumer.properties.session.timeout.ms = 6000    # environment variable KAFKA_CONSUMER_PROPERTIES_SESSION_TIMEOUT_MS",
        "kafka.producer.properties.linger.ms = 20    # command line --set",
        "kafka.properties.fetch.max.bytes = 1048576    # command line --set",
    ] {
        assert!(stdout.lines().any(|line| line == expected), "no `{expected}` in:\n{stdout}");
    }
}

#[test]
fn a_variable_that_matches_no_key_is_named_with_the_nearest_key() {
    let (_, output) = run(&[], &[("KAFKA_LISTENER_CONCURENCY", "4")], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains(
            "warning: environment variable KAFKA_LISTENER_CONCURENCY matches no configuration key; did you mean KAFKA_LISTENER_CONCURRENCY?"
        ),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_spring_boot_application_yml_loads_as_is() {
    let yaml = "spring:\n  application:\n    name: orders\n  kafka:\n    bootstrap-servers: embedded\n    \
                consumer:\n      group-id: orders\n\
                server:\n  port: 8080\n\
                management:\n  server:\n    port: 8081\n    address: 127.0.0.1\n  endpoints:\n    web:\n      \
                exposure:\n        include: health,prometheus\n  endpoint:\n    health:\n      show-details: always\n";
    let (_, output) = run(&[("application.yml", yaml)], &[], &["--print-config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|line| line == "management.server.port = 8081    # application.yml"),
        "{stdout}"
    );
    let (_, output) = run(&[("application.yml", yaml)], &[], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn a_spring_kafka_key_we_do_not_implement_is_named_as_such_and_a_typo_in_ours_stays_an_error() {
    let admin = "spring:\n  kafka:\n    admin:\n      fail-fast: true\n";
    let (_, output) = run(&[("application.yml", admin)], &[], &["--check"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("spring.kafka.admin")
            && stderr.contains("a Spring Boot key this runtime does not support"),
        "{stderr}"
    );
    let typo = "[management]\nprot = 8081\n";
    let (_, output) = run(&[("application.toml", typo)], &[], &["--check"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("unknown key `prot`"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_listener_s_attribute_values_are_overridden_by_its_own_config_keys() {
    let config = "[kafka.listeners.\"handle_user_event\"]\nconcurrency = 2\n\
                  group = \"audit\"\ntopics = [\"user-events\", \"admin-events\"]\n";
    let (_, output) = run(&[("application.toml", config)], &[], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "listener handle_user_event: topics [\"user-events\", \"admin-events\"], \
         group audit, concurrency 2, ack-mode manual\n  \
         errors: up to 10 deliveries, no back-off, then log and skip\nconfiguration OK\n"
    );
    let off = "[kafka.listeners.\"handle_user_event\"]\nauto-startup = false\n";
    let (_, output) = run(&[("application.toml", off)], &[], &["--check"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "configuration OK\n");
}

#[test]
fn print_config_all_shows_every_default_and_the_embedded_cluster() {
    let config = "[kafka.listener]\nconcurrency = 2\n";
    let (_, output) = run(
        &[("application.toml", config)],
        &[("KAFKA_EMBEDDED_PORT", "19092")],
        &["--print-config", "--all"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "kafka.listener.concurrency = 2    # application.toml",
        "kafka.listener.ack-time = \"5s\"    # default",
        "kafka.listener.error-handler.max-attempts = 10    # default",
        "kafka.consumer.max-poll-records = 500    # default",
        "management.stuck-timeout = \"60s\"    # default",
        "kafka.embedded.port = 19092    # environment variable KAFKA_EMBEDDED_PORT",
        "# no kafka.bootstrap-servers: an embedded Kafka cluster starts at 127.0.0.1:19092",
    ] {
        assert!(
            stdout.lines().any(|line| line == expected),
            "no `{expected}` in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("kafka.listener.concurrency = 1"),
        "a set key is shown once, with its value:\n{stdout}"
    );
}

#[test]
fn set_applies_over_the_bundled_configuration_instead_of_replacing_it() {
    let (_, output) = run(
        &[],
        &[],
        &["--set", "kafka.listener.concurrency=2", "--print-config"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for expected in [
        "spring.kafka.listener.concurrency = 2    # command line --set",
        "spring.kafka.consumer.group-id = \"my-consumer-group\"    # examples/user-events/application.toml",
    ] {
        assert!(stdout.lines().any(|line| line == expected), "no `{expected}` in:\n{stdout}");
    }
}
