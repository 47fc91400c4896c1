//! Configuration files as users write them: the seed's Spring Boot tree, and the errors a bad
//! file gets (naming the file, the key and what was expected).

use std::path::PathBuf;

use kafka_runtime::{AckMode, Config};

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kafka-runtime-config-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn error_of(name: &str, text: &str) -> String {
    Config::load(write(name, text))
        .expect_err("invalid config")
        .to_string()
}

#[test]
fn the_seed_spring_boot_tree_loads() {
    let path = write(
        "seed.toml",
        r#"
[spring.kafka]
bootstrap-servers = "localhost:9092"

[spring.kafka.producer]
acks = "all"
retries = 3
batch-size = 16384
compression-type = "gzip"
key-serializer = "org.apache.kafka.common.serialization.StringSerializer"
value-serializer = "org.springframework.kafka.support.serializer.JsonSerializer"

[spring.kafka.consumer]
group-id = "my-consumer-group"
auto-offset-reset = "earliest"
enable-auto-commit = false
key-deserializer = "org.apache.kafka.common.serialization.StringDeserializer"
value-deserializer = "org.springframework.kafka.support.serializer.JsonDeserializer"

[spring.kafka.listener]
ack-mode = "manual"
concurrency = 3
"#,
    );
    let config = Config::load(&path).expect("the seed's configuration is valid");
    assert_eq!(config.kafka.listener.ack_mode, AckMode::Manual);
    assert_eq!(config.kafka.listener.concurrency, 3);
    assert_eq!(
        config.kafka.consumer.group_id.as_deref(),
        Some("my-consumer-group")
    );
    assert!(!config.uses_embedded_broker());
}

#[test]
fn unknown_key_names_file_key_and_the_keys_expected() {
    let error = error_of("unknown.toml", "[kafka.consumer]\ngrop-id = \"g\"\n");
    assert!(error.contains("unknown.toml"), "{error}");
    assert!(error.contains("key `kafka.consumer.grop-id`"), "{error}");
    assert!(
        error.contains("group-id"),
        "lists the expected keys: {error}"
    );
}

#[test]
fn wrong_type_names_the_key_and_the_expected_type() {
    let error = error_of("type.toml", "[kafka.listener]\nconcurrency = \"three\"\n");
    assert!(
        error.contains("type.toml") && error.contains("kafka.listener.concurrency"),
        "{error}"
    );
    assert!(error.contains("u32"), "{error}");
}

#[test]
fn negative_concurrency_is_rejected() {
    let error = error_of("negative.toml", "[kafka.listener]\nconcurrency = -1\n");
    assert!(error.contains("kafka.listener.concurrency"), "{error}");
    let error = error_of("zero.toml", "[kafka.listener]\nconcurrency = 0\n");
    assert!(error.contains("at least 1"), "{error}");
}

#[test]
fn unknown_ack_mode_lists_springs_modes() {
    let error = error_of("ackmode.toml", "[kafka.listener]\nack-mode = \"manul\"\n");
    assert!(error.contains("kafka.listener.ack-mode"), "{error}");
    assert!(error.contains("manual_immediate"), "{error}");
}

#[test]
fn auto_commit_with_an_ack_mode_is_impossible() {
    let error = error_of(
        "autocommit.toml",
        "[kafka.consumer]\nenable-auto-commit = true\n[kafka.listener]\nack-mode = \"manual\"\n",
    );
    assert!(
        error.contains("kafka.consumer.enable-auto-commit"),
        "{error}"
    );
    assert!(error.contains("manual"), "{error}");
}

#[test]
fn both_trees_at_once_is_an_error() {
    let error = error_of(
        "both.toml",
        "[kafka]\nclient-id = \"a\"\n[spring.kafka]\nclient-id = \"b\"\n",
    );
    assert!(error.contains("both [kafka] and [spring.kafka]"), "{error}");
}

#[test]
fn malformed_toml_points_at_the_line() {
    let error = error_of("malformed.toml", "[kafka\nbootstrap-servers = 1\n");
    assert!(error.contains("malformed.toml"), "{error}");
    assert!(error.contains("line 1"), "{error}");
}

#[test]
fn unknown_serializer_lists_what_is_accepted() {
    let error = error_of(
        "serializer.toml",
        "[kafka.producer]\nvalue-serializer = \"avro\"\n",
    );
    assert!(error.contains("kafka.producer.value-serializer"), "{error}");
    assert!(error.contains("JsonSerializer"), "{error}");
}

#[test]
fn missing_file_is_named() {
    let error = Config::load("/nonexistent/dir/application.toml").expect_err("missing");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/dir/application.toml"),
        "{error}"
    );
}

#[test]
fn unknown_top_level_section_is_rejected() {
    let error = error_of("section.toml", "[kafak]\nbootstrap-servers = \"x\"\n");
    assert!(error.contains("kafak"), "{error}");
}

#[test]
fn spring_security_keys_become_librdkafka_properties() {
    let path = write(
        "secured.yml",
        r#"
spring:
  kafka:
    bootstrap-servers: "broker:9093"
    security:
      protocol: SASL_SSL
    ssl:
      trust-store-location: /etc/kafka/ca.pem
      key-store-location: /etc/kafka/client.p12
      key-store-password: key-store-secret
    properties:
      sasl.mechanism: SCRAM-SHA-512
      sasl.jaas.config: org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="jaas-secret";
management:
  port: 8081
logging:
  format: json
"#,
    );
    let config = Config::load(&path).expect("the secured configuration is valid");
    let props = config.kafka.consumer_properties("broker:9093", "g", "0");
    let get = |key: &str| props.get(key).map(String::as_str);
    assert_eq!(get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(get("ssl.ca.location"), Some("/etc/kafka/ca.pem"));
    assert_eq!(get("ssl.keystore.location"), Some("/etc/kafka/client.p12"));
    assert_eq!(get("ssl.keystore.password"), Some("key-store-secret"));
    assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(get("sasl.username"), Some("svc"));
    assert_eq!(get("sasl.password"), Some("jaas-secret"));
    assert_eq!(
        get("sasl.jaas.config"),
        None,
        "librdkafka has no such property"
    );
    assert_eq!(config.management.port, Some(8081));

    let printed = config
        .effective()
        .into_iter()
        .map(|(key, value, _)| format!("{key} = {value}"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !printed.contains("key-store-secret") && !printed.contains("jaas-secret"),
        "{printed}"
    );
    assert!(!format!("{config:?}").contains("key-store-secret"));
}

#[test]
fn key_stores_librdkafka_cannot_read_are_refused_with_the_conversion() {
    let error = error_of(
        "jks.toml",
        "[kafka]\nssl.trust-store-location = \"/etc/kafka/truststore.jks\"\n",
    );
    assert!(error.contains("jks.toml"), "{error}");
    assert!(
        error.contains("key `kafka.ssl.trust-store-location`"),
        "{error}"
    );
    assert!(error.contains("keytool -exportcert"), "{error}");
    let error = error_of(
        "jaas.toml",
        "[kafka]\nproperties.\"sasl.jaas.config\" = \"com.sun.security.auth.module.Krb5LoginModule required;\"\n",
    );
    assert!(
        error.contains("key `kafka.properties.sasl.jaas.config`")
            && error.contains("Krb5LoginModule"),
        "{error}"
    );
}

#[test]
fn the_documented_example_file_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("application.example.toml");
    let config = Config::load(&path).expect("application.example.toml is valid");
    assert_eq!(
        config.management.port, None,
        "the endpoint is off unless configured"
    );
}

#[test]
fn the_record_span_level_is_configurable() {
    use kafka_runtime::config::SpanLevel;
    let path = write("span.toml", "[kafka.listener]\nrecord-span = \"info\"\n");
    let config = Config::load(&path).expect("valid");
    assert_eq!(config.kafka.listener.record_span, SpanLevel::Info);
    assert_eq!(
        Config::default().kafka.listener.record_span,
        SpanLevel::Debug
    );
    let error = error_of(
        "span-bad.toml",
        "[kafka.listener]\nrecord-span = \"loud\"\n",
    );
    assert!(
        error.contains("key `kafka.listener.record-span`")
            && error.contains("info, debug or trace"),
        "{error}"
    );
}
