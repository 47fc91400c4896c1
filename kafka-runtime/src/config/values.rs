//! The typed values of configuration keys, each parsed with Spring's spellings.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Implements `Deserialize` through `FromStr`, so that a bad value's error lists what is accepted.
macro_rules! deserialize_from_str {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }
    };
}
pub(crate) use deserialize_from_str;

/// Normalizes Spring's relaxed enum spellings: `MANUAL_IMMEDIATE`, `manual-immediate`, `manualImmediate`.
fn relaxed(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// When a listener container commits offsets (`listener.ack-mode`, Spring's `ContainerProperties.AckMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// Commit after each record once the handler returned `Ok`.
    Record,
    /// Commit after every record of a fetched batch returned `Ok` (Spring's default).
    #[default]
    Batch,
    /// Commit handled records every `ack-time`.
    Time,
    /// Commit once `ack-count` records were handled.
    Count,
    /// Commit on `ack-time` or `ack-count`, whichever comes first.
    CountTime,
    /// Commit what the handler acknowledged through [`Ack`](crate::Ack), after each batch and at
    /// least every `ack-time`.
    Manual,
    /// Commit synchronously inside [`Ack::acknowledge`](crate::Ack::acknowledge).
    ManualImmediate,
}

impl AckMode {
    const NAMES: &'static str = "record, batch, time, count, count_time, manual, manual_immediate";

    /// Whether the handler acknowledges through an [`Ack`](crate::Ack) argument.
    pub fn is_manual(self) -> bool {
        matches!(self, AckMode::Manual | AckMode::ManualImmediate)
    }

    /// Spring's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Record => "record",
            AckMode::Batch => "batch",
            AckMode::Time => "time",
            AckMode::Count => "count",
            AckMode::CountTime => "count_time",
            AckMode::Manual => "manual",
            AckMode::ManualImmediate => "manual_immediate",
        }
    }
}

impl fmt::Display for AckMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AckMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match relaxed(text).as_str() {
            "record" => AckMode::Record,
            "batch" => AckMode::Batch,
            "time" => AckMode::Time,
            "count" => AckMode::Count,
            "counttime" => AckMode::CountTime,
            "manual" => AckMode::Manual,
            "manualimmediate" => AckMode::ManualImmediate,
            _ => {
                return Err(format!(
                    "unknown ack mode `{text}`, expected one of {}",
                    Self::NAMES
                ))
            }
        })
    }
}
deserialize_from_str!(AckMode);

/// How keys and values are encoded on the wire (`*-serializer`, `*-deserializer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// UTF-8 text (`StringSerializer`).
    String,
    /// JSON through serde (`JsonSerializer`).
    Json,
    /// Raw bytes (`ByteArraySerializer`).
    Bytes,
}

impl Format {
    pub(crate) fn default_key() -> Self {
        Format::String
    }
    pub(crate) fn default_value() -> Self {
        Format::Json
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let short = text.rsplit('.').next().unwrap_or(text);
        let short = short
            .strip_suffix("Deserializer")
            .or_else(|| short.strip_suffix("Serializer"))
            .unwrap_or(short);
        Ok(match relaxed(short).as_str() {
            "string" => Format::String,
            "json" => Format::Json,
            "bytes" | "bytearray" => Format::Bytes,
            _ => {
                return Err(format!(
                    "unknown serializer `{text}`, expected `string`, `json`, `bytes` or a Java class name \
                     such as org.apache.kafka.common.serialization.StringSerializer, \
                     org.springframework.kafka.support.serializer.JsonSerializer, \
                     org.apache.kafka.common.serialization.ByteArraySerializer"
                ))
            }
        })
    }
}
deserialize_from_str!(Format);

/// `auto-offset-reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetReset {
    /// Start at the oldest record.
    Earliest,
    /// Start at the end.
    Latest,
    /// Fail when the group has no committed offset (librdkafka `error`).
    None,
}

impl OffsetReset {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
            OffsetReset::None => "error",
        }
    }
}

impl FromStr for OffsetReset {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match relaxed(text).as_str() {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            "none" => OffsetReset::None,
            _ => {
                return Err(format!(
                    "unknown offset reset `{text}`, expected earliest, latest or none"
                ))
            }
        })
    }
}
deserialize_from_str!(OffsetReset);

/// `isolation-level`: which records of transactions consumers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// Only records of committed transactions (and records sent outside transactions).
    ReadCommitted,
    /// Every record, also those of open and aborted transactions.
    ReadUncommitted,
}

impl IsolationLevel {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}

impl FromStr for IsolationLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match relaxed(text).as_str() {
            "readcommitted" => IsolationLevel::ReadCommitted,
            "readuncommitted" => IsolationLevel::ReadUncommitted,
            _ => {
                return Err(format!(
                    "unknown isolation level `{text}`, expected read_committed or read_uncommitted"
                ))
            }
        })
    }
}
deserialize_from_str!(IsolationLevel);

/// `compression-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompressionType {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

impl CompressionType {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            CompressionType::None => "none",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }
}

impl FromStr for CompressionType {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match relaxed(text).as_str() {
            "none" => CompressionType::None,
            "gzip" => CompressionType::Gzip,
            "snappy" => CompressionType::Snappy,
            "lz4" => CompressionType::Lz4,
            "zstd" => CompressionType::Zstd,
            _ => {
                return Err(format!(
                    "unknown compression type `{text}`, expected none, gzip, snappy, lz4 or zstd"
                ))
            }
        })
    }
}
deserialize_from_str!(CompressionType);

/// `producer.acks`: `all`/`-1`, `0` or `1`, as a string or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acks {
    /// Wait for all in-sync replicas.
    All,
    /// Don't wait.
    None,
    /// Wait for the leader.
    Leader,
}

impl Acks {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::None => "0",
            Acks::Leader => "1",
        }
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match PropertyValue::deserialize(deserializer)?
            .to_string()
            .as_str()
        {
            "all" | "-1" => Ok(Acks::All),
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            other => Err(de::Error::custom(format!(
                "unknown acks `{other}`, expected all, -1, 0 or 1"
            ))),
        }
    }
}

/// `error-handler.back-off`: how long to wait between deliveries of a failing record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackOffKind {
    /// The same `interval` every time (Spring's `FixedBackOff`).
    Fixed,
    /// `initial-interval`, times `multiplier` per attempt, at most `max-interval` (Spring's `ExponentialBackOff`).
    Exponential,
}

impl FromStr for BackOffKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "fixed" => Ok(BackOffKind::Fixed),
            "exponential" => Ok(BackOffKind::Exponential),
            _ => Err(format!(
                "unknown back-off `{text}`, expected fixed or exponential"
            )),
        }
    }
}
deserialize_from_str!(BackOffKind);

/// `error-handler.recoverer`: what happens to a record after its last failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecovererKind {
    /// Log it at error level with its coordinates and skip it (Spring's default).
    Log,
    /// Publish it to the dead-letter topic, then skip it (Spring's `DeadLetterPublishingRecoverer`).
    DeadLetter,
}

impl FromStr for RecovererKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "log" => Ok(RecovererKind::Log),
            "deadletter" | "dlt" => Ok(RecovererKind::DeadLetter),
            _ => Err(format!(
                "unknown recoverer `{text}`, expected log or dead-letter"
            )),
        }
    }
}
deserialize_from_str!(RecovererKind);

/// `listener.ordering`: which records of a partition may be handled at the same time
/// (Confluent Parallel Consumer's ordering modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ordering {
    /// `partition` (default): one record of a partition at a time, in offset order.
    #[default]
    Partition,
    /// `key`: records with the same key in offset order, different keys of one partition at
    /// the same time (up to `listener.max-parallel`). A null key is a key of its own.
    Key,
    /// `none`: any records at the same time, up to `listener.max-parallel`.
    None,
}

impl FromStr for Ordering {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "partition" => Ok(Ordering::Partition),
            "key" => Ok(Ordering::Key),
            "none" | "unordered" => Ok(Ordering::None),
            _ => Err(format!(
                "unknown ordering `{text}`, expected partition, key or none"
            )),
        }
    }
}
deserialize_from_str!(Ordering);

/// `listener.type`: whether listeners take one record or a batch (Spring Boot's key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerType {
    /// `single` (default): each handler says by its arguments; one that takes a `Batch<T>` is a
    /// batch listener.
    #[default]
    Single,
    /// `batch`: every listener must be a batch listener; one that takes a single record is a
    /// startup error.
    Batch,
}

impl FromStr for ListenerType {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "single" => Ok(ListenerType::Single),
            "batch" => Ok(ListenerType::Batch),
            _ => Err(format!(
                "unknown listener type `{text}`, expected single or batch"
            )),
        }
    }
}
deserialize_from_str!(ListenerType);

/// `listener.record-span`: the level of the `record` span each record is handled in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanLevel {
    /// `info`: a span per record at the default level, for subscribers of your own (an
    /// OpenTelemetry layer, say); under an `info` subscriber it costs about as much as the rest
    /// of the framework's per-record work (see BENCHMARKS.md).
    Info,
    /// `debug` (default): no span unless debug logging is on. The lines of `run()`'s subscriber
    /// carry the record's coordinates either way.
    #[default]
    Debug,
    /// `trace`.
    Trace,
}

impl FromStr for SpanLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "info" => Ok(SpanLevel::Info),
            "debug" => Ok(SpanLevel::Debug),
            "trace" => Ok(SpanLevel::Trace),
            _ => Err(format!(
                "unknown span level `{text}`, expected info, debug or trace"
            )),
        }
    }
}
deserialize_from_str!(SpanLevel);

/// `logging.format`: how log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match relaxed(text).as_str() {
            "text" | "plain" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format `{text}`, expected text or json"
            )),
        }
    }
}
deserialize_from_str!(LogFormat);

/// `bootstrap-servers`: `"host:port,host:port"` or a list; `"embedded"` selects the mock cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapServers(pub Vec<String>);

impl BootstrapServers {
    pub(crate) fn parse(text: &str) -> Self {
        BootstrapServers(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether this selects the embedded mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.0.is_empty() || (self.0.len() == 1 && self.0[0].eq_ignore_ascii_case("embedded"))
    }

    /// librdkafka's `bootstrap.servers` value.
    pub fn joined(&self) -> String {
        self.0.join(",")
    }
}

impl<'de> Deserialize<'de> for BootstrapServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a string such as \"host:9092,host2:9092\" or a list of strings"
        )]
        enum Repr {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::One(text) => BootstrapServers::parse(&text),
            Repr::Many(list) => BootstrapServers(list),
        })
    }
}

/// A value of a `properties.*` pass-through key: librdkafka takes every setting as a string.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "a string, a number or a boolean")]
pub enum PropertyValue {
    /// Text.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::String(s) => f.write_str(s),
            PropertyValue::Integer(n) => write!(f, "{n}"),
            PropertyValue::Float(n) => write!(f, "{n}"),
            PropertyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `properties.*`: librdkafka properties by name. `Debug` redacts secret ones (passwords, the
/// JAAS line), so that printing a configuration never shows them.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct PropertyMap(BTreeMap<String, PropertyValue>);

impl PropertyMap {
    /// The property `key`.
    pub fn get(&self, key: &str) -> Option<&PropertyValue> {
        self.0.get(key)
    }

    /// Every property, by name.
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, PropertyValue> {
        self.0.iter()
    }

    /// Sets `key`.
    pub fn insert(&mut self, key: impl Into<String>, value: PropertyValue) {
        self.0.insert(key.into(), value);
    }
}

impl<'a> IntoIterator for &'a PropertyMap {
    type Item = (&'a String, &'a PropertyValue);
    type IntoIter = std::collections::btree_map::Iter<'a, String, PropertyValue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for PropertyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            if is_secret(key) {
                map.entry(key, &"<redacted>");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Spring's `Duration` spellings: an integer of milliseconds, or text such as `"500ms"`, `"5s"`,
/// `"1m"`, `"2h"`, `"1d"`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::de::{self, Deserializer};
    use serde::Deserialize;

    use super::PropertyValue;

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}`, expected e.g. 500ms, 5s, 1m or a number of milliseconds"))?;
        let millis = match unit.trim() {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(format!(
                    "invalid duration unit `{other}` in `{text}`, expected ms, s, m, h or d"
                ))
            }
        };
        Ok(Duration::from_millis(number.saturating_mul(millis)))
    }

    pub(crate) fn deserialize_option<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserialize(deserializer).map(Some)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        match PropertyValue::deserialize(deserializer)? {
            PropertyValue::Integer(ms) if ms >= 0 => Ok(Duration::from_millis(ms.unsigned_abs())),
            PropertyValue::String(text) => parse(&text).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "invalid duration `{other}`, expected e.g. \"500ms\", \"5s\" or a non-negative number of milliseconds"
            ))),
        }
    }
}

/// Keys whose values never appear in logs, `--print-config` or errors.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key.ends_with("sasl.jaas.config")
}

/// librdkafka properties, sorted so that logs and tests read them in a stable order.
pub type Properties = std::collections::BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_modes_accept_spring_spellings() {
        for text in [
            "manual_immediate",
            "MANUAL_IMMEDIATE",
            "manual-immediate",
            "manualImmediate",
        ] {
            assert_eq!(
                text.parse::<AckMode>(),
                Ok(AckMode::ManualImmediate),
                "{text}"
            );
        }
        assert!("manul"
            .parse::<AckMode>()
            .unwrap_err()
            .contains("manual_immediate"));
    }

    #[test]
    fn serializer_class_names_map_to_formats() {
        let cases = [
            (
                "org.apache.kafka.common.serialization.StringSerializer",
                Format::String,
            ),
            (
                "org.apache.kafka.common.serialization.StringDeserializer",
                Format::String,
            ),
            (
                "org.springframework.kafka.support.serializer.JsonSerializer",
                Format::Json,
            ),
            (
                "org.springframework.kafka.support.serializer.JsonDeserializer",
                Format::Json,
            ),
            (
                "org.apache.kafka.common.serialization.ByteArrayDeserializer",
                Format::Bytes,
            ),
            ("json", Format::Json),
            ("bytes", Format::Bytes),
        ];
        for (text, format) in cases {
            assert_eq!(text.parse::<Format>(), Ok(format), "{text}");
        }
        assert!("avro".parse::<Format>().is_err());
    }

    #[test]
    fn durations_use_spring_units() {
        assert_eq!(
            duration::parse("250ms"),
            Ok(std::time::Duration::from_millis(250))
        );
        assert_eq!(duration::parse("5s"), Ok(std::time::Duration::from_secs(5)));
        assert_eq!(
            duration::parse("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            duration::parse("100"),
            Ok(std::time::Duration::from_millis(100))
        );
        assert!(duration::parse("5 parsecs").is_err());
    }
}
