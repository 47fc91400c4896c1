//! Extractors: the types a `#[kafka_listener]` handler takes as arguments.
//!
//! Each argument is built from the record by [`FromRecord`], in the order written, before the
//! handler runs. The built-in extractors:
//!
//! | argument                 | gives                                                          |
//! |--------------------------|----------------------------------------------------------------|
//! | `Payload<T>`             | the value, decoded per `consumer.value-deserializer` (JSON by default; `String` and `Vec<u8>` raw) |
//! | `Key<K>`                 | the key, decoded per `consumer.key-deserializer` (string by default); a null key is a rejection |
//! | `Option<Key<K>>`         | the key, or `None` for a null key                              |
//! | [`Headers`]              | every header, with `get(name)` / `get_str(name)`               |
//! | [`Ack`]                  | the acknowledgment token (manual ack modes)                    |
//! | [`Metadata`]             | topic, partition, offset, timestamp                            |
//! | [`ConsumerRecord`]       | the whole record, raw                                          |
//! | [`DeliveryAttempt`]      | 1 on first delivery, 2 on the first redelivery, ...            |
//! | `State<T>`               | a clone of the value registered with `with_state`              |
//! | [`KafkaTemplate`]        | the application's producer                                     |
//!
//! Your own types become arguments by implementing [`FromRecord`].
//!
//! When extraction fails (an undecodable payload, a null key where `Key<K>` was asked for) the
//! handler is not called: the [`Rejection`] is logged with the record's coordinates and, since
//! retrying cannot make bad bytes good, the record is skipped rather than retried.

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::ack::Ack;
use crate::codec::{self, CodecError};
use crate::config::Format;
use crate::context::AppContext;
use crate::record::{ConsumerRecord, Header, RecordView};
use crate::template::KafkaTemplate;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything an extractor may read: the record, its ack token, the application's shared values.
///
/// The record is borrowed from the consumer's fetch buffer for as long as the arguments are
/// being built: read its key, value and headers here without copying, and copy only what the
/// handler keeps.
pub struct RecordContext<'m> {
    view: RecordView<'m>,
    /// The record copied out of the buffer, made on the first call to `record()`.
    owned: OnceCell<ConsumerRecord>,
    ack: Option<Ack>,
    app: &'m AppContext,
    key_format: Format,
    value_format: Format,
    attempt: u32,
    /// The listener's `send_to` topic.
    reply_topic: Option<&'m Arc<str>>,
}

impl<'m> RecordContext<'m> {
    pub(crate) fn new(
        view: RecordView<'m>,
        ack: Option<Ack>,
        app: &'m AppContext,
        (key_format, value_format): (Format, Format),
        attempt: u32,
    ) -> Self {
        RecordContext {
            view,
            owned: OnceCell::new(),
            ack,
            app,
            key_format,
            value_format,
            attempt,
            reply_topic: None,
        }
    }

    /// The same context, for a listener that sends its replies to `topic`.
    pub(crate) fn replying_to(mut self, topic: Option<&'m Arc<str>>) -> Self {
        self.reply_topic = topic;
        self
    }

    /// The listener's `send_to` topic, if it has one.
    pub(crate) fn reply_topic(&self) -> Option<&Arc<str>> {
        self.reply_topic
    }

    /// The whole record, owned (copied out of the consumer's buffer on the first call).
    pub fn record(&self) -> &ConsumerRecord {
        self.owned.get_or_init(|| self.view.to_record())
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.view.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.view.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        self.view.offset
    }

    /// The timestamp in milliseconds since the epoch, if the record has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.view.timestamp
    }

    /// The key's bytes; `None` for a null key.
    pub fn key(&self) -> Option<&[u8]> {
        self.view.key
    }

    /// The value's bytes; `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&[u8]> {
        self.view.value
    }

    /// The value of the last header named `name` (Spring's `lastHeader`); `None` if there is
    /// none or its value is null.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.view.last_header(name)
    }

    /// Takes the record's ack token; `None` if another argument took it or the ack mode isn't manual.
    pub fn take_ack(&mut self) -> Option<Ack> {
        self.ack.take()
    }

    /// The application's shared values.
    pub fn app(&self) -> &AppContext {
        self.app
    }

    /// The configured key format (`consumer.key-deserializer`).
    pub fn key_format(&self) -> Format {
        self.key_format
    }

    /// The configured value format (`consumer.value-deserializer`).
    pub fn value_format(&self) -> Format {
        self.value_format
    }

    /// 1 on the first delivery of this record, 2 on its first redelivery, ...
    pub fn delivery_attempt(&self) -> u32 {
        self.attempt
    }
}

/// A type that can be built from a record, and so be a `#[kafka_listener]` argument.
///
/// ```
/// use kafka_runtime::extract::{FromRecord, RecordContext, Rejection};
///
/// /// The tenant named by the record's `tenant` header.
/// struct Tenant(String);
///
/// impl FromRecord for Tenant {
///     fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
///         ctx.header("tenant")
///             .map(|v| Tenant(String::from_utf8_lossy(v).into_owned()))
///             .ok_or_else(|| Rejection::new("Tenant", "missing header `tenant`"))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[kafka_listener]` argument",
    label = "not an extractor",
    note = "arguments must be extractors: Payload<T>, Key<K>, Option<Key<K>>, Headers, Ack, Metadata, \
            ConsumerRecord, DeliveryAttempt, State<T>, KafkaTemplate, or a type implementing FromRecord"
)]
pub trait FromRecord: Sized + Send + 'static {
    /// Whether this extractor takes the [`Ack`]; a manual-ack listener must have one such argument.
    const TAKES_ACK: bool = false;

    /// Builds the argument from the record.
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection>;

    /// Checks at startup that the application can provide this argument (e.g. that a state value
    /// was registered), so that a listener fails to start rather than rejecting every record.
    fn check(app: &AppContext) -> Result<(), String> {
        let _ = app;
        Ok(())
    }
}

/// Why an argument could not be built from a record; the handler is not called.
#[derive(Debug)]
pub struct Rejection {
    extractor: &'static str,
    argument: Option<&'static str>,
    message: String,
    source: Option<BoxError>,
}

impl Rejection {
    /// A rejection by `extractor` with a message.
    pub fn new(extractor: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            extractor,
            argument: None,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    #[doc(hidden)]
    pub fn for_argument(mut self, argument: &'static str) -> Self {
        self.argument = Some(argument);
        self
    }

    /// The extractor that rejected the record.
    pub fn extractor(&self) -> &'static str {
        self.extractor
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.argument {
            Some(argument) => write!(
                f,
                "argument `{argument}` ({}): {}",
                self.extractor, self.message
            )?,
            None => write!(f, "{}: {}", self.extractor, self.message)?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        f.write_str("; not retryable")
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The record's value, decoded per `consumer.value-deserializer`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRecord for Payload<T> {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        let bytes = ctx.view.value.ok_or_else(|| {
            Rejection::new("Payload", "the record has a null value (a tombstone)")
        })?;
        decode(bytes, ctx.value_format, "Payload").map(Payload)
    }
}

pub(crate) fn decode<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    format: Format,
    extractor: &'static str,
) -> Result<T, Rejection> {
    codec::decode(bytes, format).map_err(|error: CodecError| {
        Rejection::new(
            extractor,
            format!(
                "cannot decode {} bytes as {}",
                bytes.len(),
                std::any::type_name::<T>()
            ),
        )
        .with_source(error)
    })
}

/// The record's key, decoded per `consumer.key-deserializer`. Use `Option<Key<K>>` when keys may be null.
#[derive(Debug, Clone, PartialEq)]
pub struct Key<K>(pub K);

impl<K: DeserializeOwned + Send + 'static> FromRecord for Key<K> {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        let bytes = ctx.view.key.ok_or_else(|| {
            Rejection::new(
                "Key",
                "the record has a null key; take Option<Key<K>> to accept null keys",
            )
        })?;
        decode(bytes, ctx.key_format, "Key").map(Key)
    }
}

impl<K: DeserializeOwned + Send + 'static> FromRecord for Option<Key<K>> {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        match ctx.view.key {
            None => Ok(None),
            Some(bytes) => decode(bytes, ctx.key_format, "Key").map(|key| Some(Key(key))),
        }
    }
}

/// Every header of the record, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// The value of the last header named `name` (Kafka allows repeats; the last one wins, as in
    /// Spring's `lastHeader`).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
    }

    /// [`get`](Headers::get) as UTF-8 text; `None` if missing or not UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromRecord for Headers {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        Ok(Headers(ctx.view.owned_headers()))
    }
}

/// Where the record came from: Spring's `RECEIVED_TOPIC`, `RECEIVED_PARTITION`, `OFFSET`,
/// `RECEIVED_TIMESTAMP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// Milliseconds since the epoch, if the record has a timestamp.
    pub timestamp: Option<i64>,
}

impl FromRecord for Metadata {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        let view = &ctx.view;
        Ok(Metadata {
            topic: Arc::clone(view.topic),
            partition: view.partition,
            offset: view.offset,
            timestamp: view.timestamp,
        })
    }
}

impl FromRecord for ConsumerRecord {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        Ok(match ctx.owned.take() {
            Some(record) => record,
            None => ctx.view.to_record(),
        })
    }
}

/// How many times this record has been delivered to this listener: 1, then 2 on the first
/// redelivery (Spring's `kafka_deliveryAttempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryAttempt(pub u32);

impl FromRecord for DeliveryAttempt {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        Ok(DeliveryAttempt(ctx.attempt))
    }
}

impl FromRecord for Ack {
    const TAKES_ACK: bool = true;

    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        ctx.take_ack().ok_or_else(|| {
            Rejection::new("Ack", "no ack token: the listener's ack mode is not manual")
        })
    }
}

/// A clone of the value of type `T` registered with
/// [`KafkaApplication::with_state`](crate::KafkaApplication::with_state) (wrap it in an `Arc` to share it).
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromRecord for State<T> {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        state(ctx.app)
    }

    fn check(app: &AppContext) -> Result<(), String> {
        check_state::<T>(app)
    }
}

/// A clone of the registered `T` (record and batch listeners alike).
pub(crate) fn state<T: Clone + Send + Sync + 'static>(
    app: &AppContext,
) -> Result<State<T>, Rejection> {
    app.state::<T>().cloned().map(State).ok_or_else(|| {
        Rejection::new(
            "State",
            format!("no {} registered", std::any::type_name::<T>()),
        )
    })
}

/// Whether a `T` was registered, as a startup error naming what to call.
pub(crate) fn check_state<T: Send + Sync + 'static>(app: &AppContext) -> Result<(), String> {
    match app.state::<T>() {
        Some(_) => Ok(()),
        None => Err(format!(
            "it takes State<{0}> but no {0} was registered; call .with_state(value) on the application",
            std::any::type_name::<T>()
        )),
    }
}

impl FromRecord for KafkaTemplate {
    fn from_record(ctx: &mut RecordContext<'_>) -> Result<Self, Rejection> {
        Ok(ctx.app.template().clone())
    }
}
