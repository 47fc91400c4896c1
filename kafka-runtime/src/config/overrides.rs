//! The overrides above the files: environment variables (Spring Boot's relaxed binding,
//! `KAFKA_CONSUMER_GROUP_ID` for `kafka.consumer.group-id`) and `--set key=value`.
//!
//! librdkafka pass-through keys are dotted (`session.timeout.ms`), so their paths keep the rest
//! of the key in one segment: `KAFKA_CONSUMER_PROPERTIES_SESSION_TIMEOUT_MS` and
//! `--set kafka.consumer.properties.session.timeout.ms=6000` (or `."session.timeout.ms"`) both
//! set `kafka.consumer.properties."session.timeout.ms"`.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

pub(super) const ENV: &str = "environment variable";
pub(super) const COMMAND_LINE: &str = "command line";

/// Every leaf key that an environment variable may set, relative to the `kafka` tree.
const ENV_KEYS: &[&str] = &[
    "bootstrap-servers",
    "client-id",
    "producer.acks",
    "producer.retries",
    "producer.batch-size",
    "producer.compression-type",
    "producer.linger-ms",
    "producer.key-serializer",
    "producer.value-serializer",
    "producer.transaction-id-prefix",
    "template.reply-topic",
    "template.reply-timeout",
    "consumer.group-id",
    "consumer.auto-offset-reset",
    "consumer.isolation-level",
    "consumer.enable-auto-commit",
    "consumer.key-deserializer",
    "consumer.value-deserializer",
    "consumer.max-poll-records",
    "listener.ack-mode",
    "listener.concurrency",
    "listener.ack-count",
    "listener.ack-time",
    "listener.poll-timeout",
    "listener.max-in-flight",
    "listener.shutdown-timeout",
    "listener.revoke-timeout",
    "listener.idle-event-interval",
    "listener.correlation-header",
    "listener.record-span",
    "listener.type",
    "listener.ordering",
    "listener.max-parallel",
    "listener.error-handler.back-off",
    "listener.error-handler.interval",
    "listener.error-handler.max-attempts",
    "listener.error-handler.initial-interval",
    "listener.error-handler.multiplier",
    "listener.error-handler.max-interval",
    "listener.error-handler.recoverer",
    "listener.error-handler.dead-letter-topic",
    "retry.topic.enabled",
    "retry.topic.attempts",
    "retry.topic.delay",
    "retry.topic.multiplier",
    "retry.topic.max-delay",
    "security.protocol",
    "ssl.trust-store-location",
    "ssl.trust-store-type",
    "ssl.key-store-location",
    "ssl.key-store-type",
    "ssl.key-store-password",
    "ssl.key-password",
    "embedded.port",
];

/// Every leaf key outside the `kafka` tree that an environment variable may set.
const ROOT_ENV_KEYS: &[&str] = &[
    "management.port",
    "management.address",
    "management.server.port",
    "management.server.address",
    "management.statistics-interval",
    "management.lag-alert-threshold",
    "management.stuck-timeout",
    "management.listener-control",
    "logging.format",
    "logging.level",
];

/// Spring Boot's relaxed binding: `kafka.consumer.group-id` is `KAFKA_CONSUMER_GROUP_ID`.
pub(crate) fn env_var_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c == '.' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// The sections whose `properties` map takes librdkafka's dotted keys, relative to the `kafka`
/// tree, with the variable infix that names them.
const PASS_THROUGH: &[(&str, &str)] = &[
    ("consumer.properties", "CONSUMER_PROPERTIES_"),
    ("producer.properties", "PRODUCER_PROPERTIES_"),
    ("properties", "PROPERTIES_"),
];

/// Variables of other Kafka tools that are not this configuration's.
fn is_foreign(var: &str) -> bool {
    var.ends_with("_OPTS") || ["KAFKA_HOME", "KAFKA_DEBUG", "KAFKA_VERSION"].contains(&var)
}

/// Environment overrides as a figment provider, so that errors can name the variable.
pub(super) struct EnvOverrides {
    /// (variable, key path under the root, value)
    pub(super) values: Vec<(String, Vec<String>, String)>,
    /// Variables that look like overrides and match no key, with the nearest.
    pub(super) unknown: Vec<String>,
}

impl EnvOverrides {
    pub(super) fn new(tree: &str, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let mut values: Vec<(String, Vec<String>, String)> = Vec::new();
        let mut known: Vec<String> = Vec::new();
        for key in ENV_KEYS {
            // The `SPRING_KAFKA_*` spelling wins over `KAFKA_*`, as the longer, more specific name.
            for prefix in ["kafka", "spring.kafka"] {
                let name = env_var_name(&format!("{prefix}.{key}"));
                if let Some((_, value)) = vars.iter().find(|(var, _)| *var == name) {
                    let path = path_of(tree, key);
                    values.retain(|(_, known, _)| *known != path);
                    values.push((name.clone(), path, value.clone()));
                }
                known.push(name);
            }
        }
        for key in ROOT_ENV_KEYS {
            let name = env_var_name(key);
            if let Some((_, value)) = vars.iter().find(|(var, _)| *var == name) {
                values.push((
                    name.clone(),
                    key.split('.').map(str::to_owned).collect(),
                    value.clone(),
                ));
            }
            known.push(name);
        }
        let mut unknown = Vec::new();
        for (var, value) in &vars {
            let Some(rest) = var
                .strip_prefix("SPRING_KAFKA_")
                .or_else(|| var.strip_prefix("KAFKA_"))
            else {
                continue;
            };
            if known.contains(var) || is_foreign(var) {
                continue;
            }
            match pass_through(tree, rest) {
                Some(path) => values.push((var.clone(), path, value.clone())),
                None => unknown.push(format!(
                    "environment variable {var} matches no configuration key; did you mean {}?",
                    nearest(var, &known)
                )),
            }
        }
        EnvOverrides { values, unknown }
    }
}

/// `CONSUMER_PROPERTIES_SESSION_TIMEOUT_MS` (a variable without its prefix) as the path of
/// `consumer.properties."session.timeout.ms"` under `tree`.
fn pass_through(tree: &str, rest: &str) -> Option<Vec<String>> {
    PASS_THROUGH.iter().find_map(|(section, infix)| {
        let property = rest.strip_prefix(infix).filter(|p| !p.is_empty())?;
        let mut path = path_of(tree, section);
        path.push(property.to_ascii_lowercase().replace('_', "."));
        Some(path)
    })
}

fn path_of(tree: &str, key: &str) -> Vec<String> {
    tree.split('.')
        .chain(key.split('.'))
        .map(str::to_owned)
        .collect()
}

/// The name in `known` closest to `var` (edit distance).
fn nearest<'k>(var: &str, known: &'k [String]) -> &'k str {
    known
        .iter()
        .min_by_key(|name| distance(var, name))
        .map_or("", String::as_str)
}

/// Edit distance between `a` and `b`.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(current)
            };
            previous = current;
        }
    }
    row[b.len()]
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (_, path, text) in &self.values {
            insert(&mut root, path, parse(text));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Command-line `key=value` overrides as a figment provider.
pub(super) struct CommandLine(Vec<(String, String)>);

impl CommandLine {
    /// `overrides`, their `kafka.` or `spring.kafka.` keys set in `tree`, the one in use (as
    /// variables are): `--set kafka.listener.concurrency=3` reaches a `spring.kafka` file.
    pub(super) fn new(tree: &str, overrides: &[(String, String)]) -> Self {
        let overrides = overrides
            .iter()
            .map(|(key, value)| {
                let rest = key
                    .strip_prefix("spring.kafka.")
                    .or_else(|| key.strip_prefix("kafka."));
                let key = rest.map_or_else(|| key.clone(), |rest| format!("{tree}.{rest}"));
                (key, value.clone())
            })
            .collect();
        CommandLine(overrides)
    }
}

impl Provider for CommandLine {
    fn metadata(&self) -> Metadata {
        Metadata::named(COMMAND_LINE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, text) in &self.0 {
            insert(&mut root, &key_path(key), parse(text));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// A number or boolean when the text is one, else the text.
fn parse(text: &str) -> Value {
    text.parse()
        .unwrap_or_else(|_| Value::from(text.to_owned()))
}

/// A `--set` key as its path: split at dots outside double quotes; after a `properties`
/// segment the rest is one librdkafka key (`properties.session.timeout.ms`).
pub(super) fn key_path(key: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => segments.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    segments.push(current);
    match segments.iter().position(|segment| segment == "properties") {
        Some(at) if segments.len() > at + 2 => {
            let property = segments.split_off(at + 1).join(".");
            segments.push(property);
            segments
        }
        _ => segments,
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [head, rest @ ..] => {
            let child = dict
                .entry(head.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = child {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_key_keeps_a_librdkafka_property_whole_quoted_or_not() {
        let want = ["kafka", "consumer", "properties", "session.timeout.ms"];
        assert_eq!(
            key_path("kafka.consumer.properties.\"session.timeout.ms\""),
            want
        );
        assert_eq!(
            key_path("kafka.consumer.properties.session.timeout.ms"),
            want
        );
        assert_eq!(
            key_path("kafka.listener.concurrency"),
            ["kafka", "listener", "concurrency"]
        );
    }

    #[test]
    fn property_variables_map_to_dotted_keys_and_a_typo_names_the_nearest_key() {
        let vars = [
            ("KAFKA_CONSUMER_PROPERTIES_SESSION_TIMEOUT_MS", "6000"),
            ("SPRING_KAFKA_PRODUCER_PROPERTIES_LINGER_MS", "20"),
            ("KAFKA_PROPERTIES_FETCH_MAX_BYTES", "1048576"),
            ("KAFKA_LISTENER_CONCURENCY", "4"),
            ("KAFKA_HEAP_OPTS", "-Xmx1g"),
        ]
        .map(|(var, value)| (var.to_owned(), value.to_owned()));
        let env = EnvOverrides::new("kafka", vars);
        let paths: Vec<String> = env
            .values
            .iter()
            .map(|(_, path, _)| path.join("|"))
            .collect();
        assert_eq!(
            paths,
            [
                "kafka|consumer|properties|session.timeout.ms",
                "kafka|producer|properties|linger.ms",
                "kafka|properties|fetch.max.bytes",
            ]
        );
        assert_eq!(
            env.unknown,
            ["environment variable KAFKA_LISTENER_CONCURENCY matches no configuration key; did you mean KAFKA_LISTENER_CONCURRENCY?"]
        );
    }
}
