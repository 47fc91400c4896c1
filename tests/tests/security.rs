//! TLS and SASL against the real broker (tansu, started by `scripts/broker.sh` behind a TLS
//! terminator, or requiring SCRAM): Spring Boot's keys connect, and an untrusted certificate or
//! a wrong password fails at startup with an error that says which, without printing a secret.
//! The mock cluster speaks neither, so on the embedded pass these tests have nothing to run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{OwnBroker, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::{Config, Error};

/// Whether this run is against a real broker, which `scripts/broker.sh` can run secured.
fn real_broker() -> bool {
    common::init_logging();
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").is_ok_and(|servers| !servers.trim().is_empty())
}

/// A self-signed certificate for 127.0.0.1 and its key, made with the openssl command line.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("certificate directory");
    let (cert, key) = (dir.join("broker.pem"), dir.join("broker.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    (cert, key)
}

#[kafka_listener(
    id = "secured",
    topics = "${topic}",
    group = "${group}",
    ack_mode = "manual",
    auto_startup = false
)]
async fn secured(Payload(value): Payload<String>, ack: Ack, State(seen): State<Recorder<String>>) {
    seen.push(value);
    ack.acknowledge();
}

/// `security` is TOML under `[kafka]`; the topic is declared, so created over the secured
/// connection too.
fn config(bootstrap: &str, topic: &str, security: &str) -> Config {
    let text = format!(
        "[kafka]\nbootstrap-servers = \"{bootstrap}\"\n{security}\n\
         [[kafka.topics]]\nname = \"{topic}\"\npartitions = 1\n"
    );
    Config::from_toml_str(&text, "security-test.toml").expect("valid configuration")
}

/// Starts the listener with `config`, sends one record through the template, and waits for it.
async fn round_trip(config: Config, topic: &str) {
    let seen = Recorder::<String>::default();
    let running = KafkaApplication::new(config)
        .with_listeners(["secured"])
        .with_property("topic", topic)
        .with_property("group", common::unique("secured-group"))
        .with_state(seen.clone())
        .start()
        .await
        .expect("the application connects");
    running
        .template()
        .send_value(topic, &"over a secured connection".to_owned())
        .await
        .expect("the template sends");
    assert_eq!(seen.wait_for(1).await, ["over a secured connection"]);
    running.shutdown().await;
}

/// Starts with `config`, expecting a startup failure within a bound; returns its message.
async fn startup_error(config: Config, topic: &str) -> String {
    let started = Instant::now();
    let result = KafkaApplication::new(config)
        .with_listeners(["secured"])
        .with_property("topic", topic)
        .with_property("group", "never-joined")
        .with_state(Recorder::<String>::default())
        .start()
        .await;
    assert!(
        started.elapsed() < PATIENCE,
        "the failure is reported, not hung on ({:?})",
        started.elapsed()
    );
    match result {
        Err(error @ Error::Security { .. }) => error.to_string(),
        Err(other) => panic!("expected a security error, got: {other}"),
        Ok(running) => {
            running.shutdown().await;
            panic!("started although the connection should have been refused")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_with_the_trusted_certificate_and_refuses_an_untrusted_one() {
    if !real_broker() {
        return;
    }
    let dir = common::repository()
        .join("target")
        .join(common::unique("tls"));
    let (cert, key) = self_signed(&dir);
    let broker = OwnBroker::start(&["start-tls", &cert.to_string_lossy(), &key.to_string_lossy()]);
    let topic = common::unique("tls-topic");
    let trusted = format!(
        "security.protocol = \"SSL\"\nssl.trust-store-location = \"{}\"\n",
        cert.display()
    );
    round_trip(config(&broker.bootstrap, &topic, &trusted), &topic).await;

    let error = startup_error(
        config(&broker.bootstrap, &topic, "security.protocol = \"SSL\"\n"),
        &topic,
    )
    .await;
    assert!(
        error.contains("TLS certificate is not trusted")
            && error.contains("kafka.ssl.trust-store-location"),
        "the error says which setting to fix: {error}"
    );
    let _ = std::fs::remove_dir_all(dir);
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_connects_with_the_password_and_refuses_a_wrong_one_without_printing_it() {
    if !real_broker() {
        return;
    }
    let password = "c0rrect-h0rse";
    let broker = OwnBroker::start(&["start-sasl", "alice", password]);
    let topic = common::unique("sasl-topic");
    let sasl = |password: &str| {
        format!(
            "security.protocol = \"SASL_PLAINTEXT\"\n\
             properties.\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
             properties.\"sasl.jaas.config\" = 'org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"{password}\";'\n"
        )
    };
    round_trip(config(&broker.bootstrap, &topic, &sasl(password)), &topic).await;

    let wrong = "wr0ng-battery";
    let error = startup_error(config(&broker.bootstrap, &topic, &sasl(wrong)), &topic).await;
    assert!(
        error.contains("rejected the SASL credentials"),
        "the error says the credentials were rejected: {error}"
    );
    assert!(
        !error.contains(wrong) && !error.contains(password),
        "no password in the error: {error}"
    );
    drop(broker);
}
