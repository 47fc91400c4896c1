//! What `#[kafka_listener]` registers, and what handlers return.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::batch::BatchContext;
use crate::config::{AckMode, Ordering};
use crate::context::AppContext;
use crate::extract::{RecordContext, Rejection};

/// The future of one handler call.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// The outcome of extracting a handler's arguments from a record.
pub enum Invocation {
    /// Every argument was built; the handler's future is ready to run.
    Run(HandlerFuture),
    /// An argument could not be built; the handler is not called.
    Rejected(Rejection),
}

/// How a listener's handler is called: with one record, or with a batch of one partition's
/// records (a handler that takes a `Batch<T>`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Invoker {
    /// Builds the arguments from one record.
    Record(fn(&mut RecordContext<'_>) -> Invocation),
    /// Builds the arguments from a batch.
    Batch(fn(&mut BatchContext<'_>) -> Invocation),
}

/// One `#[kafka_listener]`, registered at compile time through `inventory`.
///
/// Built by the macro; all logic stays in the runtime.
#[derive(Debug)]
pub struct ListenerRegistration {
    pub(crate) declared: ListenerDeclaration,
}

/// What the macro declares of one listener; not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct ListenerDeclaration {
    pub id: &'static str,
    pub function: &'static str,
    pub topics: &'static [&'static str],
    /// The topic pattern, instead of `topics` (may hold `${}` placeholders).
    pub topic_pattern: Option<&'static str>,
    /// Explicit partitions of `topics` (`"0, 2, 4-6"`), instead of the group's assignment.
    pub partitions: Option<&'static str>,
    /// Where explicit partitions start (`earliest`, `latest`, `42`, `-10`, `timestamp:<ms>`).
    pub initial_offset: Option<&'static str>,
    pub group: Option<&'static str>,
    pub concurrency: Option<u32>,
    pub ack_mode: Option<AckMode>,
    pub ordering: Option<Ordering>,
    pub auto_startup: bool,
    pub takes_ack: bool,
    /// The `send_to` topic (may hold `${}` placeholders).
    pub send_to: Option<&'static str>,
    /// The record filter (`true` discards).
    pub filter: Option<crate::intercept::RecordFilter>,
    /// Where a record's id is for the idempotent receiver (`key`, `header:<name>`).
    pub dedupe: Option<&'static str>,
    /// Typed attribute values given as `${name:default}`: `(key, text)`, resolved at startup.
    pub placeholders: &'static [(&'static str, &'static str)],
    pub invoke: Invoker,
    pub check: fn(&AppContext) -> Result<(), String>,
}

impl ListenerDeclaration {
    /// The value of the typed attribute `key` given as a placeholder, resolved with
    /// `properties` (then the environment, then its default) and parsed; `None` when it was not
    /// one.
    pub(crate) fn placeholder_value<T: std::str::FromStr>(
        &self,
        key: &str,
        properties: &std::collections::BTreeMap<String, String>,
        expected: &str,
    ) -> Result<Option<T>, String> {
        let Some((_, text)) = self.placeholders.iter().find(|(name, _)| *name == key) else {
            return Ok(None);
        };
        let resolved = crate::placeholder::resolve(text, properties)
            .map_err(|error| format!("`{key} = \"{text}\"`: {error}"))?;
        resolved.trim().parse().map(Some).map_err(|_| {
            format!("`{key} = \"{text}\"` resolved to `{resolved}`; expected {expected}")
        })
    }
}

impl ListenerRegistration {
    #[doc(hidden)]
    pub const fn new(declared: ListenerDeclaration) -> Self {
        ListenerRegistration { declared }
    }

    /// The listener id: the `id` attribute, or the handler function's name.
    pub fn id(&self) -> &'static str {
        self.declared.id
    }

    /// The topics it consumes (none when it consumes a `topic_pattern`).
    pub fn topics(&self) -> &'static [&'static str] {
        self.declared.topics
    }

    /// The pattern of the topics it consumes, when it has one instead of `topics`.
    pub fn topic_pattern(&self) -> Option<&'static str> {
        self.declared.topic_pattern
    }

    /// Every listener linked into this binary.
    pub fn all() -> impl Iterator<Item = &'static ListenerRegistration> {
        inventory::iter::<ListenerRegistration>.into_iter()
    }
}

inventory::collect!(ListenerRegistration);

/// A failed handler call: the error's type name and message (with its chain), and whether
/// retrying may help.
///
/// Handlers may return `Result<(), E>` for any `E: Display`; `?` turns any `std::error::Error`
/// into a `HandlerError`.
#[derive(Clone)]
pub struct HandlerError {
    type_name: &'static str,
    /// The error's message, then its causes' (`source()` chain).
    chain: Vec<String>,
    message: String,
    retryable: bool,
    /// In a batch, the index of the record that failed (`BatchError::at`).
    batch_index: Option<usize>,
}

impl HandlerError {
    /// A retryable error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_chain(std::any::type_name::<Self>(), vec![message.into()], true)
    }

    fn with_chain(type_name: &'static str, chain: Vec<String>, retryable: bool) -> Self {
        HandlerError {
            type_name,
            message: chain.join(": "),
            chain,
            retryable,
            batch_index: None,
        }
    }

    /// A record that an extractor rejected: never retryable.
    pub(crate) fn rejected(rejection: &Rejection) -> Self {
        let mut chain = vec![rejection.to_string()];
        let mut source = std::error::Error::source(rejection);
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        Self::with_chain(std::any::type_name::<Rejection>(), chain, false)
    }

    /// An error that retrying cannot fix (e.g. a record that breaks a business rule).
    pub fn non_retryable(message: impl Into<String>) -> Self {
        Self::with_chain(std::any::type_name::<Self>(), vec![message.into()], false)
    }

    pub(crate) fn panic(payload: &(dyn Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self::with_chain("panic", vec![message], true)
    }

    /// Whether the record may succeed when delivered again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// In a batch listener's error, the index of the record that failed, if the handler said.
    pub fn batch_index(&self) -> Option<usize> {
        self.batch_index
    }

    /// The message, with the error's causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The Rust type of the original error.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The type, the message and each cause on its own line, like a Java stack trace's header
    /// (what dead letters carry in `kafka_dlt-exception-stacktrace`).
    pub fn chain(&self) -> String {
        let mut text = format!(
            "{}: {}",
            self.type_name,
            self.chain.first().map_or("", String::as_str)
        );
        for cause in self.chain.iter().skip(1) {
            text.push_str("\nCaused by: ");
            text.push_str(cause);
        }
        text
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("type_name", &self.type_name)
            .field("message", &self.message)
            .field("retryable", &self.retryable)
            .finish()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        let mut chain = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        Self::with_chain(std::any::type_name::<E>(), chain, true)
    }
}

/// What a handler may return: `()` or `Result<(), E>` with `E: Display`.
#[diagnostic::on_unimplemented(
    message = "`#[kafka_listener]` handlers return `()` or `Result<(), E>` with `E: Display`, not `{Self}`"
)]
pub trait IntoHandlerResult {
    /// Converts the return value.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> IntoHandlerResult for Result<(), E> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(|error| {
            let mut slot = Some(error);
            if let Some(handler_error) = (&mut slot as &mut dyn Any)
                .downcast_mut::<Option<HandlerError>>()
                .and_then(Option::take)
            {
                return handler_error;
            }
            if let Some(batch_error) = (&mut slot as &mut dyn Any)
                .downcast_mut::<Option<BatchError>>()
                .and_then(Option::take)
            {
                return batch_error.into();
            }
            match slot {
                Some(error) => HandlerError::with_chain(
                    std::any::type_name::<E>(),
                    vec![format!("{error:#}")],
                    true,
                ),
                // Only a `HandlerError` is ever taken out of the slot above.
                None => HandlerError::new("handler error"),
            }
        })
    }
}

/// A batch listener's error (Spring's `BatchListenerFailedException`): which record of the batch
/// failed, or the whole batch.
///
/// - [`BatchError::at`]`(index, error)`: the records before `index` are committed; the record at
///   `index` is retried with the error handler's back-off and then recovered (logged or
///   dead-lettered); the records after it are delivered again after it.
/// - Any other error (`?` on a `std::error::Error`, [`BatchError::whole`]): the whole batch is
///   delivered again with the back-off, then each of its records is recovered.
///
/// ```
/// use kafka_runtime::prelude::*;
/// # #[derive(serde::Deserialize)] struct Order { id: u64 }
/// # fn store(_: &Order) -> bool { true }
///
/// #[kafka_listener(topics = "orders", group = "store")]
/// async fn save(Batch(orders): Batch<Order>) -> Result<(), BatchError> {
///     for (index, order) in orders.iter().enumerate() {
///         if !store(&order.payload) {
///             return Err(BatchError::at(index, HandlerError::new("store refused it")));
///         }
///     }
///     Ok(())
/// }
/// ```
pub struct BatchError {
    index: Option<usize>,
    error: HandlerError,
}

impl BatchError {
    /// The record at `index` (in the batch as the handler received it) failed.
    pub fn at(index: usize, error: impl Into<HandlerError>) -> Self {
        BatchError {
            index: Some(index),
            error: error.into(),
        }
    }

    /// The batch failed as a whole.
    pub fn whole(error: impl Into<HandlerError>) -> Self {
        BatchError {
            index: None,
            error: error.into(),
        }
    }
}

impl From<BatchError> for HandlerError {
    fn from(BatchError { index, mut error }: BatchError) -> Self {
        error.batch_index = index;
        error
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for BatchError {
    fn from(error: E) -> Self {
        BatchError::whole(error)
    }
}

impl From<HandlerError> for BatchError {
    fn from(error: HandlerError) -> Self {
        let index = error.batch_index;
        BatchError { index, error }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "record {index} of the batch: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl fmt::Debug for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchError")
            .field("index", &self.index)
            .field("error", &self.error)
            .finish()
    }
}
