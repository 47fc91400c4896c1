//! Reading `application.toml` and the environment into a validated [`Config`].

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Format as _, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Metadata};
use serde::Deserialize;

use super::overrides::{distance, key_path, CommandLine, EnvOverrides, COMMAND_LINE, ENV};
use super::values::is_secret;
use super::{Config, KafkaSettings, LoggingSettings, ManagementSettings};

/// A configuration that cannot be used, with where the bad value came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{source_name}: {message}")]
    Syntax {
        /// The file.
        source_name: String,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A key is unknown, has the wrong type or an impossible value.
    #[error("{source_name}: key `{key}`: {message}")]
    Invalid {
        /// The file or environment variable that set the value.
        source_name: String,
        /// The key path, e.g. `kafka.listener.concurrency`.
        key: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

/// The trees this runtime reads; any other top-level key (`server`, `spring.application`, ...)
/// belongs to someone else and is ignored.
#[derive(Deserialize)]
struct Root {
    #[serde(default)]
    kafka: Option<KafkaSettings>,
    #[serde(default)]
    spring: Option<SpringRoot>,
    #[serde(default)]
    management: ManagementSettings,
    #[serde(default)]
    logging: LoggingSettings,
}

#[derive(Deserialize)]
struct SpringRoot {
    #[serde(default)]
    kafka: Option<KafkaSettings>,
}

/// Where a configuration comes from, lowest precedence first: defaults, the base file, the
/// profile's file, the environment, the command line.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The base file (`application.toml`, or `.yml` / `.yaml`).
    pub base: Option<std::path::PathBuf>,
    /// Whether a missing base file is an error (else: defaults and environment only).
    pub base_required: bool,
    /// The profile: `application-<profile>.<ext>` next to the base file, layered over it.
    pub profile: Option<String>,
    /// `key=value` overrides from the command line, e.g. `kafka.listener.concurrency=3`.
    pub overrides: Vec<(String, String)>,
    /// TOML text to use when the base file does not exist (or instead of one, without `base`),
    /// with the name errors give it: a configuration the binary carries (`include_str!`).
    pub text: Option<(String, String)>,
    /// Leave the `KAFKA_*` / `SPRING_KAFKA_*` / `MANAGEMENT_*` / `LOGGING_*` variables out (a
    /// configuration built in code, a test's).
    pub ignore_environment: bool,
}

/// One file as a provider; `None` if it is optional and missing.
fn file(path: &Path, required: bool) -> Result<Option<Figment>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(_) => {
            let yaml = path
                .extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml");
            let figment = if yaml {
                Figment::new().merge(figment::providers::Yaml::file_exact(path))
            } else {
                Figment::new().merge(Toml::file_exact(path))
            };
            Ok(Some(figment))
        }
        Err(source) if required || source.kind() != std::io::ErrorKind::NotFound => {
            Err(ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            })
        }
        Err(_) => Ok(None),
    }
}

/// `application-<profile>.<ext>` next to `base`.
fn profile_path(base: &Path, profile: &str) -> std::path::PathBuf {
    let stem = base.file_stem().map_or_else(
        || "application".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let ext = base
        .extension()
        .map_or_else(|| "toml".to_owned(), |e| e.to_string_lossy().into_owned());
    base.with_file_name(format!("{stem}-{profile}.{ext}"))
}

/// The one way a configuration is loaded: every `Config` constructor is a [`Layers`].
pub(super) fn load_layers(
    layers: &Layers,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    let base = layers
        .base
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("application.toml"));
    let from_file = match &layers.base {
        Some(path) => file(path, layers.base_required)?,
        None => None,
    };
    let source = match (from_file, &layers.text) {
        (Some(provider), _) => {
            figment = figment.merge(provider);
            Some(base.display().to_string())
        }
        (None, Some((text, name))) => {
            figment = figment.merge(Toml::string(text));
            Some(name.clone())
        }
        (None, None) => layers.base.as_ref().map(|b| b.display().to_string()),
    };
    if let Some(profile) = &layers.profile {
        if let Some(provider) = file(&profile_path(&base, profile), true)? {
            figment = figment.merge(provider);
        }
    }
    let vars: Vec<(String, String)> = if layers.ignore_environment {
        Vec::new()
    } else {
        vars.into_iter().collect()
    };
    with_env(figment, source, vars, &layers.overrides)
}

/// Merges environment and command-line overrides over `figment` and extracts the config.
fn with_env(
    figment: Figment,
    fallback: Option<String>,
    vars: impl IntoIterator<Item = (String, String)>,
    overrides: &[(String, String)],
) -> Result<Config, ConfigError> {
    let env = EnvOverrides::new(tree_of(&figment), vars);
    let env_names: Vec<(String, String)> = env
        .values
        .iter()
        .map(|(var, path, _)| (var.clone(), path.join(".")))
        .collect();
    let warnings = env.unknown.clone();
    let tree = tree_of(&figment);
    let figment = figment.merge(env).merge(CommandLine::new(tree, overrides));
    let describe = Describe {
        figment: figment.clone(),
        env_names,
        fallback: fallback.clone().unwrap_or_else(|| "defaults".to_owned()),
    };
    let mut config = extract(
        figment.clone(),
        &|key: &str| describe.source_of(key),
        fallback,
    )?;
    config.layers = Some(describe);
    config.warnings = warnings;
    Ok(config)
}

/// Names where each key's value came from.
#[derive(Clone)]
pub(crate) struct Describe {
    figment: Figment,
    env_names: Vec<(String, String)>,
    fallback: String,
}

impl fmt::Debug for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The merged values hold secrets in the clear: show only where they came from.
        f.debug_struct("Describe")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl Describe {
    pub(crate) fn source_of(&self, key: &str) -> String {
        let metadata = (!key.is_empty())
            .then(|| self.metadata_at(&key_path(key)))
            .flatten();
        let Some(metadata) = metadata else {
            return self.fallback.clone();
        };
        if metadata.name == ENV {
            if let Some((var, _)) = self
                .env_names
                .iter()
                .find(|(_, path)| key.starts_with(path.as_str()))
            {
                return format!("environment variable {var}");
            }
        }
        if metadata.name == COMMAND_LINE {
            return "command line --set".to_owned();
        }
        match &metadata.source {
            Some(figment::Source::File(path)) => path.display().to_string(),
            // Text given in code (a bundled file) goes by the name it was given.
            _ => self.fallback.clone(),
        }
    }

    /// Where the value at `path` came from; a path segment may hold dots (a librdkafka key).
    fn metadata_at(&self, path: &[String]) -> Option<&Metadata> {
        let mut value = self.figment.find_value("").ok()?;
        for segment in path {
            value = value.into_dict()?.remove(segment)?;
        }
        self.figment.get_metadata(value.tag())
    }

    /// [`effective`](Describe::effective), plus the default of every key left unset.
    pub(crate) fn effective_all(&self) -> Vec<(String, String, String)> {
        let defaults = Figment::from(Toml::string(&super::defaults::under(tree_of(
            &self.figment,
        ))));
        let mut all = self.effective();
        let mut leaves = Vec::new();
        if let Ok(Value::Dict(_, root)) = defaults.find_value("") {
            flatten("", &root, &mut leaves);
        }
        for (key, value) in leaves {
            if !all.iter().any(|(set, _, _)| *set == key) {
                all.push((key, value, "default".to_owned()));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every key with a value, with its value (secrets redacted) and its source.
    pub(crate) fn effective(&self) -> Vec<(String, String, String)> {
        let mut leaves = Vec::new();
        if let Ok(Value::Dict(_, root)) = self.figment.find_value("") {
            flatten("", &root, &mut leaves);
        }
        leaves
            .into_iter()
            .map(|(key, value)| {
                let shown = if is_secret(&key) {
                    "\"<redacted>\"".to_owned()
                } else {
                    value
                };
                let source = self.source_of(&key);
                (key, shown, source)
            })
            .collect()
    }
}

fn flatten(prefix: &str, dict: &Dict, out: &mut Vec<(String, String)>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Dict(_, inner) => flatten(&path, inner, out),
            Value::String(_, text) => out.push((path, format!("{text:?}"))),
            other => out.push((path, serde_json::to_string(other).unwrap_or_default())),
        }
    }
}

fn tree_of(figment: &Figment) -> &'static str {
    if figment.find_value("spring.kafka").is_ok() {
        "spring.kafka"
    } else {
        "kafka"
    }
}

/// The top-level trees this runtime reads, and those under `spring`.
const ROOTS: [&str; 4] = ["kafka", "spring", "management", "logging"];
const SPRING_ROOTS: [&str; 1] = ["kafka"];

/// Keys outside the trees read here are someone else's and ignored, unless they look like a
/// typo of one of ours (`kafak`).
fn check_roots(figment: &Figment, source_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let near = |path: &str, roots: &[&str]| -> Result<(), ConfigError> {
        let Ok(Value::Dict(_, dict)) = figment.find_value(path) else {
            return Ok(());
        };
        for key in dict.keys() {
            if let Some(meant) = roots
                .iter()
                .find(|root| *root != key && distance(key, root) <= 2)
            {
                let key = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                return Err(ConfigError::Invalid {
                    source_name: source_of(&key),
                    message: format!("unknown key; did you mean `{meant}`?"),
                    key,
                });
            }
        }
        Ok(())
    };
    near("", &ROOTS)?;
    near("spring", &SPRING_ROOTS)
}

fn extract(
    figment: Figment,
    source_of: &dyn Fn(&str) -> String,
    source: Option<String>,
) -> Result<Config, ConfigError> {
    check_roots(&figment, source_of)?;
    let tree = tree_of(&figment);
    let root: Root = figment
        .extract()
        .map_err(|error| from_figment(error, source_of))?;
    let kafka = match (root.kafka, root.spring.and_then(|s| s.kafka)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                source_name: source_of("spring.kafka"),
                key: "spring.kafka".to_owned(),
                message: "both [kafka] and [spring.kafka] are set; keep one tree".to_owned(),
            })
        }
        (Some(kafka), None) | (None, Some(kafka)) => kafka,
        (None, None) => KafkaSettings::default(),
    };
    validate(&kafka, tree, source_of)?;
    let management = spring_server(root.management, source_of)?;
    Ok(Config {
        kafka,
        management,
        logging: root.logging,
        source,
        layers: None,
        warnings: Vec::new(),
    })
}

/// `management.server.port` / `.address` (Spring Boot's spelling) read as `management.port` /
/// `.address`; both spellings with different values are an error.
fn spring_server(
    mut management: ManagementSettings,
    source_of: &dyn Fn(&str) -> String,
) -> Result<ManagementSettings, ConfigError> {
    if let Some(port) = management.server.port {
        if management.port.is_some_and(|own| own != port) {
            return Err(ConfigError::Invalid {
                source_name: source_of("management.server.port"),
                key: "management.server.port".to_owned(),
                message: "differs from management.port; set one of them".to_owned(),
            });
        }
        management.port = Some(port);
    }
    if let Some(address) = management.server.address.clone() {
        management.address = address;
    }
    Ok(management)
}

fn from_figment(error: figment::Error, source_of: &dyn Fn(&str) -> String) -> ConfigError {
    use figment::error::Kind;
    let mut key = error.path.join(".");
    let message = match &error.kind {
        Kind::UnknownField(field, expected) => {
            if error.path.last() != Some(field) {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(field);
            }
            match super::spring::unsupported(&key) {
                Some(alternative) => {
                    format!("a Spring Boot key this runtime does not support; {alternative}")
                }
                None => format!("unknown key `{field}`, expected one of {}", OneOf(expected)),
            }
        }
        Kind::Message(text) if error.path.is_empty() => {
            // TOML syntax errors arrive as a bare message with the line and column in it.
            return ConfigError::Syntax {
                source_name: source_of(""),
                message: text.clone(),
            };
        }
        other => other.to_string(),
    };
    let source_name = source_of(&key);
    ConfigError::Invalid {
        source_name,
        key: if key.is_empty() {
            "<file>".to_owned()
        } else {
            key
        },
        message,
    }
}

struct OneOf<'a>(&'a [&'static str]);

impl fmt::Display for OneOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

/// The settings' own checks (`validate.rs`), with the key named in the tree and its source.
fn validate(
    kafka: &KafkaSettings,
    tree: &str,
    source_of: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    kafka.validate().map_err(|problem| {
        let key = format!("{tree}.{}", problem.key);
        ConfigError::Invalid {
            source_name: source_of(&key),
            key,
            message: problem.message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_boot_s_server_keys_set_the_endpoint_and_foreign_trees_are_ignored() {
        let text = "[spring.application]\nname = \"orders\"\n[server]\nport = 8080\n\
                    [management.server]\nport = 8081\naddress = \"127.0.0.1\"\n\
                    [management.endpoints.web.exposure]\ninclude = \"health\"\n";
        let config = Config::from_toml_str(text, "application.toml").expect("loads");
        assert_eq!(config.management.port, Some(8081));
        assert_eq!(config.management.address, "127.0.0.1");
        let both = "[management]\nport = 9000\n[management.server]\nport = 8081\n";
        let error = Config::from_toml_str(both, "application.toml").expect_err("two ports");
        assert!(
            error.to_string().contains("management.server.port"),
            "{error}"
        );
    }

    fn layers(path: &Path, required: bool) -> Layers {
        Layers {
            base: Some(path.to_owned()),
            base_required: required,
            ..Layers::default()
        }
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("kafka-runtime-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{:x}.toml", text.len() * 31 + vars.len()));
        std::fs::write(&path, text).expect("write config");
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        load_layers(&layers(&path, true), vars)
    }

    #[test]
    fn environment_overrides_file_with_relaxed_names() {
        let config = load_str(
            "[kafka]\nbootstrap-servers = \"file:9092\"\n[kafka.consumer]\ngroup-id = \"from-file\"\n",
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", "env:9092"),
                ("SPRING_KAFKA_LISTENER_CONCURRENCY", "3"),
                ("KAFKA_LISTENER_ACK_MODE", "manual"),
            ],
        )
        .expect("valid");
        assert_eq!(
            config
                .kafka
                .bootstrap_servers
                .map(|b| b.joined())
                .as_deref(),
            Some("env:9092")
        );
        assert_eq!(config.kafka.consumer.group_id.as_deref(), Some("from-file"));
        assert_eq!(config.kafka.listener.concurrency, 3);
        assert_eq!(
            config.kafka.listener.ack_mode,
            super::super::AckMode::Manual
        );
    }

    #[test]
    fn environment_overrides_a_spring_tree() {
        let config = load_str(
            "[spring.kafka.consumer]\ngroup-id = \"g\"\n",
            &[("KAFKA_CONSUMER_GROUP_ID", "from-env")],
        )
        .expect("valid");
        assert_eq!(config.kafka.consumer.group_id.as_deref(), Some("from-env"));
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        let error = load_str("", &[("KAFKA_LISTENER_CONCURRENCY", "lots")]).expect_err("invalid");
        let text = error.to_string();
        assert!(
            text.contains("environment variable KAFKA_LISTENER_CONCURRENCY"),
            "{text}"
        );
        assert!(text.contains("kafka.listener.concurrency"), "{text}");
    }

    #[test]
    fn missing_required_file_is_unreadable() {
        let missing = Path::new("/nonexistent/application.toml");
        let error = load_layers(&layers(missing, true), Vec::new()).expect_err("missing");
        assert!(
            error.to_string().contains("/nonexistent/application.toml"),
            "{error}"
        );
        let config = load_layers(&layers(missing, false), Vec::new()).expect("optional file");
        assert!(config.uses_embedded_broker());
    }

    #[test]
    fn layers_apply_profile_env_and_command_line_in_order() {
        let dir = std::env::temp_dir().join(format!("kafka-runtime-layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let base = dir.join("application.yml");
        std::fs::write(
            &base,
            "spring:\n  kafka:\n    client-id: base\n    consumer:\n      group-id: base\n    listener:\n      concurrency: 1\n      ack-count: 2\n    properties:\n      sasl.password: hunter2\n",
        )
        .expect("base");
        std::fs::write(
            dir.join("application-prod.yml"),
            "spring:\n  kafka:\n    consumer:\n      group-id: prod\n    listener:\n      concurrency: 2\n",
        )
        .expect("profile");
        let layers = Layers {
            base: Some(base.clone()),
            base_required: true,
            profile: Some("prod".to_owned()),
            overrides: vec![("spring.kafka.listener.ack-count".to_owned(), "5".to_owned())],
            ..Layers::default()
        };
        let vars = vec![("KAFKA_LISTENER_CONCURRENCY".to_owned(), "3".to_owned())];
        let config = load_layers(&layers, vars).expect("valid");
        assert_eq!(config.kafka.client_id.as_deref(), Some("base"));
        assert_eq!(
            config.kafka.consumer.group_id.as_deref(),
            Some("prod"),
            "profile over base"
        );
        assert_eq!(
            config.kafka.listener.concurrency, 3,
            "environment over profile"
        );
        assert_eq!(config.kafka.listener.ack_count, 5, "command line over all");
        let effective = config.effective();
        let find = |key: &str| effective.iter().find(|(k, _, _)| k == key).cloned();
        let (_, group, source) = find("spring.kafka.consumer.group-id").expect("group");
        assert_eq!(group, "\"prod\"");
        assert!(source.ends_with("application-prod.yml"), "{source}");
        let (_, _, source) = find("spring.kafka.listener.concurrency").expect("concurrency");
        assert_eq!(source, "environment variable KAFKA_LISTENER_CONCURRENCY");
        let (_, password, _) = find("spring.kafka.properties.sasl.password").expect("password");
        assert_eq!(password, "\"<redacted>\"");
        let missing = Layers {
            profile: Some("nope".to_owned()),
            ..layers
        };
        let error = load_layers(&missing, Vec::new()).expect_err("missing profile file");
        assert!(
            error.to_string().contains("application-nope.yml"),
            "{error}"
        );
    }
}
