//! Spring-for-Apache-Kafka-style listeners on [rdkafka] and [tokio].
//!
//! Annotate async handler functions; get a Kafka consumer service with acknowledgment-driven
//! commits, configured by an `application.toml` that mirrors Spring Boot's `spring.kafka.*` keys.
//!
//! ```no_run
//! use kafka_runtime::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! struct UserEvent { event_type: String, user_id: String }
//!
//! #[kafka_listener(topics = "user-events", group = "my-consumer-group", ack_mode = "manual")]
//! async fn handle_user_event(
//!     Payload(event): Payload<UserEvent>,
//!     Key(key): Key<String>,
//!     ack: Ack,
//! ) -> Result<(), HandlerError> {
//!     tracing::info!(%key, event_type = %event.event_type, user = %event.user_id, "processing");
//!     ack.acknowledge(); // the offset is committed once this and every earlier record is acknowledged
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), kafka_runtime::Error> {
//!     KafkaApplication::from_default_config()?.run().await
//! }
//! ```
//!
//! The path of a record: a container's consumer ([`container`](crate#architecture)) polls it and
//! hands it to its partition's worker; the worker builds the handler's arguments with
//! [`extract::FromRecord`], runs the handler, and settles the record: acknowledged records form a
//! prefix per partition whose end is committed per [`AckMode`]; failed or nacked ones are sought
//! back and delivered again.
//!
//! # Architecture
//! See `ARCHITECTURE.md` in the repository.

#![deny(missing_docs)]

mod ack;
mod admin;
mod app;
pub mod batch;
pub mod cli;
pub mod codec;
pub mod config;
mod container;
mod context;
mod control;
mod dead_letter;
pub mod dedupe;
pub mod embedded;
mod error;
mod events;
pub mod extract;
mod handling;
mod intercept;
mod lifecycle;
mod listener;
mod log;
mod management;
mod placeholder;
mod reachability;
mod record;
pub mod reply;
mod sync;
pub mod template;
#[cfg(feature = "test-util")]
pub mod test;
mod transaction;

pub use ack::Ack;
pub use app::{ConsumerAssignments, KafkaApplication, RunningApplication, ShutdownReport};
pub use batch::{Batch, BatchAck, BatchRecord};
pub use cli::{run, run_with};
pub use config::{AckMode, Config, ConfigError, Ordering};
pub use context::AppContext;
pub use control::{ListenerHandle, SeekTo};
pub use dead_letter::DeadLetter;
pub use dedupe::{IdempotencyStore, InMemoryIdempotencyStore};
pub use embedded::EmbeddedKafka;
pub use error::Error;
pub use events::{ConsumerEvent, ListenerEvents};
pub use extract::{DeliveryAttempt, Headers, Key, Metadata, Payload, State};
pub use intercept::{Intercepted, RecordFilter, RecordInterceptor};
pub use kafka_macros::kafka_listener;
pub use lifecycle::HookResult;
pub use listener::{BatchError, HandlerError, IntoHandlerResult, ListenerRegistration};
pub use record::{ConsumerRecord, Header, TimestampType};
pub use reply::Reply;
pub use template::{InTransactionError, KafkaTemplate, SendError, SendResult};
pub use transaction::TransactionError;

/// Everything a handler module needs: `use kafka_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{
        kafka_listener, Ack, Batch, BatchAck, BatchError, ConsumerRecord, DeliveryAttempt,
        HandlerError, Headers, KafkaApplication, KafkaTemplate, Key, Metadata, Payload, Reply,
        State,
    };
}

/// What the `#[kafka_listener]` expansion refers to; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::batch::{BatchContext, FromBatch};
    pub use crate::config::AckMode;
    pub use crate::extract::{FromRecord, RecordContext};
    pub use crate::listener::{
        IntoHandlerResult, Invocation, Invoker, ListenerDeclaration, ListenerRegistration,
    };
    pub use crate::reply::{
        NoReply, Probe, ReplyTo, ReplyValue, ValueReply, ViaHandlerResult, ViaReply,
    };
    pub use crate::AppContext;
    pub use inventory;

    /// A handler's future, boxed for the container: a future that is not `Send` fails this
    /// bound, and rustc's error names the value held across the `.await`.
    pub fn boxed_handler<F>(future: F) -> crate::listener::HandlerFuture
    where
        F: std::future::Future<Output = Result<(), crate::listener::HandlerError>> + Send + 'static,
    {
        Box::pin(future)
    }

    /// Asserts at the payload type's span that it can be deserialized.
    pub const fn assert_deserializable<T: serde::de::DeserializeOwned>() {}
}
