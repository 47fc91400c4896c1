//! Configuration: the `spring.kafka.*` tree of Spring Boot, mirrored key for key.
//!
//! An `application.toml` holds the tree under `[kafka]` (or, for a mechanical translation of a Spring
//! Boot `application.yml`, under `[spring.kafka]`; both at once is an error):
//!
//! ```toml
//! [kafka]
//! bootstrap-servers = "localhost:9092"
//!
//! [kafka.producer]
//! acks = "all"
//! compression-type = "gzip"
//! value-serializer = "org.springframework.kafka.support.serializer.JsonSerializer"
//!
//! [kafka.consumer]
//! group-id = "my-consumer-group"
//! auto-offset-reset = "earliest"
//!
//! [kafka.listener]
//! ack-mode = "manual"
//! concurrency = 3
//! ```
//!
//! Environment variables override the file with Spring Boot's relaxed names:
//! `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_CONSUMER_GROUP_ID`, `SPRING_KAFKA_LISTENER_CONCURRENCY`, ...
//! Every error names the source (file or variable), the key path and what was expected.

pub(crate) mod client;
mod defaults;
mod load;
mod overrides;
pub mod security;
mod spring;
mod validate;
mod values;

pub use load::{ConfigError, Layers};
pub(crate) use overrides::env_var_name;
pub use values::Properties;
pub use values::{
    AckMode, Acks, BackOffKind, BootstrapServers, CompressionType, Format, IsolationLevel,
    ListenerType, LogFormat, OffsetReset, Ordering, PropertyMap, PropertyValue, RecovererKind,
    SpanLevel,
};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The whole `[kafka]` (or `[spring.kafka]`) tree of `application.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct KafkaSettings {
    /// `bootstrap-servers`: a string (`"a:9092,b:9092"`) or a list. Unset or `"embedded"` starts the
    /// in-process mock cluster (see [`crate::embedded`]).
    #[serde(default)]
    pub bootstrap_servers: Option<BootstrapServers>,
    /// `client-id`: librdkafka's `client.id` for every client.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `properties.*`: librdkafka settings passed unchanged to every client.
    #[serde(default)]
    pub properties: PropertyMap,
    /// `producer.*`: the [`KafkaTemplate`](crate::KafkaTemplate)'s producer.
    #[serde(default)]
    pub producer: ProducerSettings,
    /// `template.*`: the template's request/reply side.
    #[serde(default)]
    pub template: TemplateSettings,
    /// `consumer.*`: every listener container's consumers.
    #[serde(default)]
    pub consumer: ConsumerSettings,
    /// `listener.*`: how containers dispatch records and commit offsets.
    #[serde(default)]
    pub listener: ListenerSettings,
    /// `listeners."<id>".*`: settings of one listener that override `listener.*`.
    #[serde(default)]
    pub listeners: BTreeMap<String, ListenerOverrides>,
    /// `retry.*`: non-blocking retries (Spring Boot's `spring.kafka.retry.topic.*`).
    #[serde(default)]
    pub retry: RetrySettings,
    /// `[[kafka.topics]]`: topics created at startup when missing (Spring's `NewTopic` beans).
    #[serde(default)]
    pub topics: Vec<TopicDeclaration>,
    /// `security.*`: the protocol (TLS, SASL) of every client.
    #[serde(default)]
    pub security: security::SecuritySettings,
    /// `ssl.*`: TLS key material and trusted certificates of every client.
    #[serde(default)]
    pub ssl: security::SslSettings,
    /// `embedded.*`: the in-process cluster started when no `bootstrap-servers` is set.
    #[serde(default)]
    pub embedded: EmbeddedSettings,
}

/// `[kafka.embedded]`: the in-process cluster (see [`crate::embedded`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct EmbeddedSettings {
    /// `port`: clients reach the cluster at `127.0.0.1:<port>` (for a second terminal's
    /// producer, the same every run). Unset: a free port, logged at startup.
    #[serde(default)]
    pub port: Option<u16>,
}

/// One `[[kafka.topics]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct TopicDeclaration {
    /// The topic name.
    pub name: String,
    /// Partitions (default 1).
    #[serde(default = "TopicDeclaration::default_partitions")]
    pub partitions: i32,
    /// Replicas per partition (default 1).
    #[serde(default = "TopicDeclaration::default_replication_factor")]
    pub replication_factor: i32,
    /// Topic configuration, e.g. `retention.ms`, `cleanup.policy`.
    #[serde(default)]
    pub config: BTreeMap<String, values::PropertyValue>,
    /// Whether an existing topic with fewer partitions is grown to `partitions` (default false:
    /// it is reported at startup).
    #[serde(default)]
    pub grow_partitions: bool,
}

impl TopicDeclaration {
    fn default_partitions() -> i32 {
        1
    }
    fn default_replication_factor() -> i32 {
        1
    }
}

/// `[kafka.template]`: requests that wait for their reply (Spring's `ReplyingKafkaTemplate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct TemplateSettings {
    /// `reply-topic`: where replies to this application's requests arrive (named in each
    /// request's `kafka_replyTopic`); created at startup when missing. Not a Spring Boot key:
    /// Spring names it with the reply container.
    #[serde(default)]
    pub reply_topic: Option<String>,
    /// `reply-timeout`: how long a request waits for its reply unless it says (default 5s,
    /// Spring's).
    #[serde(
        default = "TemplateSettings::default_reply_timeout",
        with = "values::duration"
    )]
    pub reply_timeout: Duration,
}

impl TemplateSettings {
    fn default_reply_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

impl Default for TemplateSettings {
    fn default() -> Self {
        TemplateSettings {
            reply_topic: None,
            reply_timeout: Self::default_reply_timeout(),
        }
    }
}

/// `[kafka.retry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct RetrySettings {
    /// `retry.topic.*`: retry topics for every listener (per listener: `listeners."<id>".retry-topic`).
    #[serde(default)]
    pub topic: RetryTopicSettings,
}

/// Non-blocking retries through retry topics (Spring's `@RetryableTopic`): a failed record is
/// republished to `<topic>-retry-0`, `<topic>-retry-1`, ... with its due time in a header, handled
/// again by the same listener once due, and finally published to `<topic>-dlt`. The source
/// partition keeps flowing meanwhile. Unset keys take Spring Boot's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct RetryTopicSettings {
    /// `enabled`: use retry topics instead of blocking retries (default false).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `attempts`: deliveries in all, the first on the source topic (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// `delay`: the wait before the first retry (default 1s).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub delay: Option<Duration>,
    /// `multiplier`: growth of the wait per retry (default 1.0: fixed).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// `max-delay`: the longest wait (default: none).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub max_delay: Option<Duration>,
}

impl RetryTopicSettings {
    /// These settings with every unset key taken from `defaults`.
    pub fn or(&self, defaults: &RetryTopicSettings) -> RetryTopicSettings {
        RetryTopicSettings {
            enabled: self.enabled.or(defaults.enabled),
            attempts: self.attempts.or(defaults.attempts),
            delay: self.delay.or(defaults.delay),
            multiplier: self.multiplier.or(defaults.multiplier),
            max_delay: self.max_delay.or(defaults.max_delay),
        }
    }
}

/// `[kafka.listeners."<listener id>"]`: per-listener overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ListenerOverrides {
    /// Overrides of `listener.error-handler.*`, key by key.
    #[serde(default)]
    pub error_handler: ErrorHandlerSettings,
    /// Overrides of `retry.topic.*`, key by key.
    #[serde(default)]
    pub retry_topic: RetryTopicSettings,
    /// Overrides `listener.ordering` (and the attribute's `ordering`).
    #[serde(default)]
    pub ordering: Option<Ordering>,
    /// Overrides `listener.max-parallel`.
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// Overrides the attribute's `concurrency` (and `listener.concurrency`).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Overrides the attribute's `ack_mode` (and `listener.ack-mode`).
    #[serde(default)]
    pub ack_mode: Option<AckMode>,
    /// Overrides the attribute's `auto_startup`.
    #[serde(default)]
    pub auto_startup: Option<bool>,
    /// Overrides the attribute's `topics` (placeholders allowed).
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Overrides the attribute's `topic_pattern` (placeholders allowed): the listener consumes
    /// every topic whose whole name matches.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Overrides the attribute's `partitions` (`"0, 2, 4-6"`): the listener is assigned these
    /// partitions of its topics instead of joining the group's rebalancing.
    #[serde(default)]
    pub partitions: Option<String>,
    /// Overrides the attribute's `dedupe`: where a record's id is (`key` or `header:<name>`) for
    /// the idempotent receiver.
    #[serde(default)]
    pub dedupe: Option<String>,
    /// Overrides the attribute's `initial_offset`: where explicit partitions start (`earliest`,
    /// `latest`, `42`, `-10` from the end, `timestamp:<epoch millis>`).
    #[serde(default)]
    pub initial_offset: Option<String>,
    /// Overrides the attribute's `group` (placeholders allowed).
    #[serde(default)]
    pub group: Option<String>,
}

/// `[kafka.listener.error-handler]`: retries of failing records and what happens after the last
/// one (Spring's `DefaultErrorHandler` with a back-off and a recoverer). Every key is optional;
/// unset keys take Spring's defaults: ten deliveries without delay, then log and skip.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ErrorHandlerSettings {
    /// `back-off`: `fixed` (default) or `exponential`.
    #[serde(default)]
    pub back_off: Option<BackOffKind>,
    /// `interval`: the fixed back-off's wait (default 0).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub interval: Option<Duration>,
    /// `max-attempts`: deliveries in all, the first included (default 10).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// `initial-interval`: the exponential back-off's first wait (default 2s).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub initial_interval: Option<Duration>,
    /// `multiplier`: the exponential back-off's growth per attempt (default 1.5).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// `max-interval`: the exponential back-off's longest wait (default 30s).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub max_interval: Option<Duration>,
    /// `recoverer`: `log` (default: log at error and skip) or `dead-letter`.
    #[serde(default)]
    pub recoverer: Option<RecovererKind>,
    /// `dead-letter-topic`: where `dead-letter` publishes; `{topic}` is the record's topic
    /// (default `{topic}.DLT`, Spring's name).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
}

impl ErrorHandlerSettings {
    /// These settings with every unset key taken from `defaults`.
    pub fn or(&self, defaults: &ErrorHandlerSettings) -> ErrorHandlerSettings {
        ErrorHandlerSettings {
            back_off: self.back_off.or(defaults.back_off),
            interval: self.interval.or(defaults.interval),
            max_attempts: self.max_attempts.or(defaults.max_attempts),
            initial_interval: self.initial_interval.or(defaults.initial_interval),
            multiplier: self.multiplier.or(defaults.multiplier),
            max_interval: self.max_interval.or(defaults.max_interval),
            recoverer: self.recoverer.or(defaults.recoverer),
            dead_letter_topic: self
                .dead_letter_topic
                .clone()
                .or_else(|| defaults.dead_letter_topic.clone()),
        }
    }
}

/// `[kafka.producer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ProducerSettings {
    /// `acks`: `"all"`, `"-1"`, `"0"` or `"1"` (librdkafka `acks`).
    #[serde(default)]
    pub acks: Option<Acks>,
    /// `retries`: librdkafka `retries`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// `batch-size`: bytes per batch, librdkafka `batch.size`.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// `compression-type`: `none`, `gzip`, `snappy`, `lz4` or `zstd` (librdkafka `compression.type`).
    #[serde(default)]
    pub compression_type: Option<CompressionType>,
    /// `linger-ms`: librdkafka `linger.ms`.
    #[serde(default)]
    pub linger_ms: Option<u64>,
    /// `key-serializer`: how the template encodes keys (default `string`).
    #[serde(default = "Format::default_key")]
    pub key_serializer: Format,
    /// `value-serializer`: how the template encodes values (default `json`).
    #[serde(default = "Format::default_value")]
    pub value_serializer: Format,
    /// `transaction-id-prefix`: turns transactions on (Spring Boot's key): each listener's
    /// handling runs in a Kafka transaction with its consumed offsets, and the template can run
    /// transactions of its own ([`KafkaTemplate::in_transaction`](crate::KafkaTemplate::in_transaction)).
    #[serde(default)]
    pub transaction_id_prefix: Option<String>,
    /// `properties.*`: librdkafka producer settings passed unchanged.
    #[serde(default)]
    pub properties: PropertyMap,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            acks: None,
            retries: None,
            batch_size: None,
            compression_type: None,
            linger_ms: None,
            key_serializer: Format::default_key(),
            value_serializer: Format::default_value(),
            transaction_id_prefix: None,
            properties: PropertyMap::default(),
        }
    }
}

/// `[kafka.consumer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// `group-id`: the consumer group of listeners that don't name their own `group`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// `auto-offset-reset`: `earliest` (default, as in the seed's consumer), `latest` or `none`
    /// (librdkafka `auto.offset.reset`).
    #[serde(default = "ConsumerSettings::default_offset_reset")]
    pub auto_offset_reset: OffsetReset,
    /// `isolation-level`: `read_committed` or `read_uncommitted` (librdkafka `isolation.level`;
    /// unset: librdkafka's default, `read_committed`).
    #[serde(default)]
    pub isolation_level: Option<IsolationLevel>,
    /// `enable-auto-commit`: must stay `false`; the container commits according to `listener.ack-mode`.
    #[serde(default)]
    pub enable_auto_commit: Option<bool>,
    /// `key-deserializer`: how `Key<K>` decodes keys (default `string`).
    #[serde(default = "Format::default_key")]
    pub key_deserializer: Format,
    /// `value-deserializer`: how `Payload<T>` decodes values (default `json`).
    #[serde(default = "Format::default_value")]
    pub value_deserializer: Format,
    /// `max-poll-records`: records taken from the consumer per batch (default 500); a batch ends
    /// earlier when no more records are ready.
    #[serde(default = "ConsumerSettings::default_max_poll_records")]
    pub max_poll_records: u32,
    /// `properties.*`: librdkafka consumer settings passed unchanged.
    #[serde(default)]
    pub properties: PropertyMap,
}

impl ConsumerSettings {
    fn default_offset_reset() -> OffsetReset {
        OffsetReset::Earliest
    }
    fn default_max_poll_records() -> u32 {
        500
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: None,
            auto_offset_reset: Self::default_offset_reset(),
            isolation_level: None,
            enable_auto_commit: None,
            key_deserializer: Format::default_key(),
            value_deserializer: Format::default_value(),
            max_poll_records: Self::default_max_poll_records(),
            properties: PropertyMap::default(),
        }
    }
}

/// `[kafka.listener]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ListenerSettings {
    /// `ack-mode`: when offsets are committed (Spring's names; default `batch`).
    #[serde(default)]
    pub ack_mode: AckMode,
    /// `concurrency`: consumers per listener (default 1).
    #[serde(default = "ListenerSettings::default_concurrency")]
    pub concurrency: u32,
    /// `ack-count`: records between commits in `count` and `count_time` modes (default 1).
    #[serde(default = "ListenerSettings::default_ack_count")]
    pub ack_count: u32,
    /// `ack-time`: the longest time acknowledged offsets wait for a commit (default 5s).
    #[serde(
        default = "ListenerSettings::default_ack_time",
        with = "values::duration"
    )]
    pub ack_time: Duration,
    /// `poll-timeout`: the longest an idle container sleeps before it checks its state (default 5s).
    #[serde(
        default = "ListenerSettings::default_poll_timeout",
        with = "values::duration"
    )]
    pub poll_timeout: Duration,
    /// `max-in-flight`: per partition, records handed out but not yet acknowledged before the
    /// partition stops reading until acknowledgments arrive (default 1000). Not a Spring key:
    /// Spring's listeners run on the poll thread.
    #[serde(default = "ListenerSettings::default_max_in_flight")]
    pub max_in_flight: u32,
    /// `shutdown-timeout`: how long in-flight handlers may run on at shutdown before their
    /// records are abandoned (uncommitted, delivered again later) (default 10s, Spring's).
    #[serde(
        default = "ListenerSettings::default_shutdown_timeout",
        with = "values::duration"
    )]
    pub shutdown_timeout: Duration,
    /// `revoke-timeout`: when the group takes partitions away, how long their running handlers
    /// may finish before the acknowledged offsets are committed and the partitions given up; a
    /// handler still running then is abandoned (its record stays uncommitted and is delivered
    /// again by the partition's next owner) (default 30s). Not a Spring key: Spring's listeners
    /// run on the poll thread, which the revocation waits for.
    #[serde(
        default = "ListenerSettings::default_revoke_timeout",
        with = "values::duration"
    )]
    pub revoke_timeout: Duration,
    /// `idle-event-interval`: a consumer that handled no record for this long tells the
    /// application's [`ListenerEvents::idle`](crate::ListenerEvents::idle), and again every
    /// interval while it stays idle (Spring's `ListenerContainerIdleEvent`; default: none).
    #[serde(default, deserialize_with = "values::duration::deserialize_option")]
    pub idle_event_interval: Option<Duration>,
    /// `correlation-header`: the header recorded on each record's tracing span and copied onto
    /// the records its handler sends through the template (default `correlation_id`, the seed's).
    #[serde(default = "ListenerSettings::default_correlation_header")]
    pub correlation_header: String,
    /// `record-span`: the level of the span each record is handled in: `info`, `debug`
    /// (default) or `trace`. Under a log subscriber at `info`, creating it costs about as much
    /// as the rest of the framework's per-record work (see BENCHMARKS.md); the lines of `run()`'s
    /// subscriber carry the record's coordinates without it.
    #[serde(default)]
    pub record_span: SpanLevel,
    /// `type`: `single` (default) or `batch` (Spring Boot's `listener.type`). A handler that
    /// takes a `Batch<T>` is a batch listener either way; `batch` makes a handler that takes a
    /// single record a startup error.
    #[serde(default, rename = "type")]
    pub kind: ListenerType,
    /// `ordering`: `partition` (default: one record of a partition at a time), `key` (records
    /// of one key in order, different keys at the same time) or `none`. Not a Spring key: the
    /// ordering modes of Confluent's Parallel Consumer.
    #[serde(default)]
    pub ordering: Ordering,
    /// `max-parallel`: with `ordering` `key` or `none`, how many handlers of one consumer (its
    /// partitions together) may run at the same time (default 16).
    #[serde(default = "ListenerSettings::default_max_parallel")]
    pub max_parallel: u32,
    /// `error-handler.*`: retries and recovery of failing records.
    #[serde(default)]
    pub error_handler: ErrorHandlerSettings,
}

impl ListenerSettings {
    fn default_concurrency() -> u32 {
        1
    }
    fn default_ack_count() -> u32 {
        1
    }
    fn default_ack_time() -> Duration {
        Duration::from_secs(5)
    }
    fn default_poll_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_max_in_flight() -> u32 {
        1000
    }
    fn default_shutdown_timeout() -> Duration {
        Duration::from_secs(10)
    }
    fn default_revoke_timeout() -> Duration {
        Duration::from_secs(30)
    }
    fn default_max_parallel() -> u32 {
        16
    }
    fn default_correlation_header() -> String {
        "correlation_id".to_owned()
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            ack_mode: AckMode::default(),
            concurrency: Self::default_concurrency(),
            ack_count: Self::default_ack_count(),
            ack_time: Self::default_ack_time(),
            poll_timeout: Self::default_poll_timeout(),
            max_in_flight: Self::default_max_in_flight(),
            shutdown_timeout: Self::default_shutdown_timeout(),
            revoke_timeout: Self::default_revoke_timeout(),
            idle_event_interval: None,
            correlation_header: Self::default_correlation_header(),
            record_span: SpanLevel::default(),
            kind: ListenerType::default(),
            ordering: Ordering::default(),
            max_parallel: Self::default_max_parallel(),
            error_handler: ErrorHandlerSettings::default(),
        }
    }
}

/// `[management]`: the HTTP endpoint for health probes and Prometheus metrics (Spring Boot's
/// actuator). Off unless `port` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ManagementSettings {
    /// `port`: serve `/health`, `/health/liveness`, `/health/readiness` and `/metrics` here
    /// (`0`: any free port, logged at startup). Unset: no endpoint.
    #[serde(default)]
    pub port: Option<u16>,
    /// `address`: the interface to bind (default `0.0.0.0`).
    #[serde(default = "ManagementSettings::default_address")]
    pub address: String,
    /// `statistics-interval`: how often librdkafka reports statistics, the source of consumer
    /// lag and broker state (default 5s; librdkafka's `statistics.interval.ms`).
    #[serde(
        default = "ManagementSettings::default_statistics_interval",
        with = "values::duration"
    )]
    pub statistics_interval: Duration,
    /// `lag-alert-threshold`: a partition whose lag stays above this many records for two
    /// statistics reports in a row is logged at warn and marks readiness details `DEGRADED`.
    #[serde(default)]
    pub lag_alert_threshold: Option<u64>,
    /// `stuck-timeout`: a consumer whose poll loop has not turned for this long, or a partition
    /// whose handler or acknowledgments made no progress for this long, fails liveness
    /// (default 60s).
    #[serde(
        default = "ManagementSettings::default_stuck_timeout",
        with = "values::duration"
    )]
    pub stuck_timeout: Duration,
    /// `listener-control`: serve `POST /listeners/{id}/{pause|resume|stop|start}` (default
    /// false: `GET /listeners` only). Anyone who reaches the port can then stop the service's
    /// consumers: bind `address` to a private interface.
    #[serde(default)]
    pub listener_control: bool,
    /// `server.port` / `server.address`: Spring Boot actuator's spelling of `port` and
    /// `address`, read as them.
    #[serde(default)]
    pub server: ManagementServer,
    // Spring Boot actuator's trees that configure what this runtime serves its own way; an
    // `application.yml` that sets them loads as is.
    #[serde(default, rename = "endpoints")]
    _endpoints: serde::de::IgnoredAny,
    #[serde(default, rename = "endpoint")]
    _endpoint: serde::de::IgnoredAny,
    #[serde(default, rename = "health")]
    _health: serde::de::IgnoredAny,
    #[serde(default, rename = "metrics")]
    _metrics: serde::de::IgnoredAny,
    #[serde(default, rename = "info")]
    _info: serde::de::IgnoredAny,
    #[serde(default, rename = "prometheus")]
    _prometheus: serde::de::IgnoredAny,
    #[serde(default, rename = "tracing")]
    _tracing: serde::de::IgnoredAny,
}

/// `[management.server]`: Spring Boot actuator's `management.server.port` and `.address`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct ManagementServer {
    /// `port`: the same as `management.port`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `address`: the same as `management.address`.
    #[serde(default)]
    pub address: Option<String>,
}

impl ManagementSettings {
    fn default_address() -> String {
        "0.0.0.0".to_owned()
    }
    fn default_statistics_interval() -> Duration {
        Duration::from_secs(5)
    }
    fn default_stuck_timeout() -> Duration {
        Duration::from_secs(60)
    }
}

impl Default for ManagementSettings {
    fn default() -> Self {
        Self {
            port: None,
            address: Self::default_address(),
            statistics_interval: Self::default_statistics_interval(),
            lag_alert_threshold: None,
            stuck_timeout: Self::default_stuck_timeout(),
            listener_control: false,
            server: ManagementServer::default(),
            _endpoints: serde::de::IgnoredAny,
            _endpoint: serde::de::IgnoredAny,
            _health: serde::de::IgnoredAny,
            _metrics: serde::de::IgnoredAny,
            _info: serde::de::IgnoredAny,
            _prometheus: serde::de::IgnoredAny,
            _tracing: serde::de::IgnoredAny,
        }
    }
}

/// `[logging]`: what [`run`](crate::run) logs and how.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct LoggingSettings {
    /// `format`: `text` (default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// `level`: a `tracing` filter such as `info` or `info,kafka_runtime=debug` (default
    /// `info,librdkafka=warn`); `RUST_LOG` wins over it.
    #[serde(default)]
    pub level: Option<String>,
}

/// Loaded, validated configuration with the name of where it came from.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The `kafka` tree.
    pub kafka: KafkaSettings,
    /// The `management` tree: health and metrics endpoint.
    pub management: ManagementSettings,
    /// The `logging` tree.
    pub logging: LoggingSettings,
    /// Where the file tree came from (for error messages); `None` when only defaults were used.
    pub source: Option<String>,
    /// The layers it was merged from, to tell where each value came from.
    layers: Option<load::Describe>,
    /// What looked wrong but did not stop loading (a variable that matches no key).
    warnings: Vec<String>,
}

impl Config {
    /// Loads `path` (TOML), applies environment overrides and validates the result.
    ///
    /// A missing file is an error; use [`Config::load_or_default`] for the optional default file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_layers(&Layers {
            base: Some(path.as_ref().to_owned()),
            base_required: true,
            ..Layers::default()
        })
    }

    /// Like [`Config::load`], but a missing file means "defaults plus environment".
    pub fn load_or_default(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_layers(&Layers {
            base: Some(path.as_ref().to_owned()),
            ..Layers::default()
        })
    }

    /// Loads base file, profile file, environment and command-line overrides, in that order of
    /// precedence (the last wins), and validates the result. `.yml` / `.yaml` files are read as
    /// YAML (a Spring Boot `application.yml` with a `spring.kafka` tree loads as is).
    pub fn load_layers(layers: &Layers) -> Result<Self, ConfigError> {
        load::load_layers(layers, std::env::vars())
    }

    /// What looked wrong but did not stop loading, e.g. a `KAFKA_*` variable that matches no key
    /// (with the nearest one); the application logs these at startup.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Every key with its value and where it came from, the defaults of unset keys included
    /// (their source `default`), sorted by key; secrets redacted.
    pub fn effective_all(&self) -> Vec<(String, String, String)> {
        self.layers
            .as_ref()
            .map(load::Describe::effective_all)
            .unwrap_or_default()
    }

    /// Every key that has a value: `(key, value, source)`, secrets shown as `"<redacted>"`.
    /// Empty for `Config::default()`.
    pub fn effective(&self) -> Vec<(String, String, String)> {
        self.layers
            .as_ref()
            .map(load::Describe::effective)
            .unwrap_or_default()
    }

    /// Parses TOML text (named `source` in errors, e.g. a file bundled with `include_str!`), then
    /// applies environment overrides and validates the result, as [`Config::load`] does.
    pub fn load_str(text: &str, source: &str) -> Result<Self, ConfigError> {
        Self::load_layers(&Layers {
            text: Some((text.to_owned(), source.to_owned())),
            ..Layers::default()
        })
    }

    /// Parses TOML text (named `source` in errors), without environment overrides.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, ConfigError> {
        Self::load_layers(&Layers {
            text: Some((text.to_owned(), source.to_owned())),
            ignore_environment: true,
            ..Layers::default()
        })
    }

    /// Sets `bootstrap-servers` (e.g. to an [`EmbeddedKafka`](crate::EmbeddedKafka)'s address).
    pub fn with_bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.kafka.bootstrap_servers = Some(BootstrapServers::parse(&servers.into()));
        self
    }

    /// Whether the embedded mock cluster is used (`bootstrap-servers` unset or `"embedded"`).
    pub fn uses_embedded_broker(&self) -> bool {
        self.kafka
            .bootstrap_servers
            .as_ref()
            .is_none_or(BootstrapServers::is_embedded)
    }
}
