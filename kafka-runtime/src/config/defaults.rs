//! Every key's default, as `--print-config --all` shows it. Written out once here; a test keeps
//! it equal to what the settings types default to.

/// The defaults of the keys that have one, under `[kafka]` (keys without one are librdkafka's
/// or unset).
const DEFAULTS: &str = r#"
[kafka.producer]
key-serializer = "string"
value-serializer = "json"

[kafka.template]
reply-timeout = "5s"

[kafka.consumer]
auto-offset-reset = "earliest"
key-deserializer = "string"
value-deserializer = "json"
max-poll-records = 500

[kafka.listener]
ack-mode = "batch"
concurrency = 1
ack-count = 1
ack-time = "5s"
poll-timeout = "5s"
max-in-flight = 1000
shutdown-timeout = "10s"
revoke-timeout = "30s"
correlation-header = "correlation_id"
record-span = "debug"
type = "single"
ordering = "partition"
max-parallel = 16

[kafka.listener.error-handler]
back-off = "fixed"
interval = "0ms"
max-attempts = 10
recoverer = "log"
dead-letter-topic = "{topic}.DLT"

[kafka.retry.topic]
enabled = false
attempts = 3
delay = "1s"
multiplier = 1.0

[management]
address = "0.0.0.0"
statistics-interval = "5s"
stuck-timeout = "60s"
listener-control = false

[logging]
format = "text"
level = "info,librdkafka=warn"
"#;

/// [`DEFAULTS`] with the Kafka settings under `tree` (`kafka` or `spring.kafka`).
pub(super) fn under(tree: &str) -> String {
    DEFAULTS.replace("[kafka.", &format!("[{tree}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ListenerSettings};
    use crate::container::{ErrorPolicy, RetryTopics};

    #[test]
    fn the_written_defaults_are_the_settings_defaults() {
        let written = Config::from_toml_str(&under("kafka"), "defaults").expect("valid");
        let default = Config::default();
        let (kafka, expected) = (&written.kafka, &default.kafka);
        assert_eq!(
            format!("{:?}", kafka.producer),
            format!("{:?}", expected.producer)
        );
        assert_eq!(
            format!("{:?}", kafka.consumer),
            format!("{:?}", expected.consumer)
        );
        let without_errors = |listener: &ListenerSettings| ListenerSettings {
            error_handler: Default::default(),
            ..listener.clone()
        };
        assert_eq!(
            format!("{:?}", without_errors(&kafka.listener)),
            format!("{:?}", without_errors(&expected.listener))
        );
        assert_eq!(
            format!("{:?}", ErrorPolicy::new(&kafka.listener.error_handler)),
            format!("{:?}", ErrorPolicy::new(&expected.listener.error_handler))
        );
        let enabled = |mut topic: crate::config::RetryTopicSettings| {
            topic.enabled = Some(true);
            format!("{:?}", RetryTopics::new(&topic))
        };
        assert_eq!(
            enabled(kafka.retry.topic.clone()),
            enabled(expected.retry.topic.clone())
        );
        assert_eq!(
            format!("{:?}", written.management),
            format!("{:?}", default.management)
        );
        assert_eq!(written.logging.format, default.logging.format);
    }
}

#[cfg(test)]
mod env_tests {
    use figment::providers::{Format as _, Toml};
    use figment::value::Value;
    use figment::Figment;

    use super::*;
    use crate::config::overrides::{env_var_name, EnvOverrides};

    /// The keys of the written defaults, as `a.b.c`.
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, value) in dict {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaves(&path, value, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn every_key_with_a_default_can_be_set_from_the_environment() {
        let root = Figment::from(Toml::string(&under("kafka")))
            .find_value("")
            .expect("defaults parse");
        let mut keys = Vec::new();
        leaves("", &root, &mut keys);
        let vars: Vec<(String, String)> = keys
            .iter()
            .map(|key| (env_var_name(key), "1".to_owned()))
            .collect();
        let env = EnvOverrides::new("kafka", vars);
        assert!(env.unknown.is_empty(), "{:#?}", env.unknown);
        assert_eq!(env.values.len(), keys.len());
    }
}
