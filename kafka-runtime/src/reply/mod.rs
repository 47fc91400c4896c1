//! Replies (Spring's `@SendTo`): what a listener's handler returns is sent on, to the
//! listener's `send_to` topic or to the topic the request names in Spring's `kafka_replyTopic`
//! header.
//!
//! ```
//! use kafka_runtime::prelude::*;
//! # #[derive(serde::Deserialize)] struct Order { id: u64, amount: u64 }
//! #[derive(serde::Serialize)]
//! struct Priced { id: u64, total: u64 }
//!
//! // One reply per order, with the order's key, to `orders.priced`.
//! #[kafka_listener(topics = "orders", group = "pricing", send_to = "orders.priced")]
//! async fn price(Payload(order): Payload<Order>) -> Result<Priced, HandlerError> {
//!     Ok(Priced { id: order.id, total: order.amount * 2 })
//! }
//! ```
//!
//! What a handler may return, and what is sent:
//!
//! | return type | replies |
//! |---|---|
//! | `T: Serialize` | one, encoded per `producer.value-serializer` |
//! | `Option<T>` | one, or none for `None` |
//! | `Vec<T>` | one per element (Spring's `splitIterables`); `Vec<u8>` is one reply of bytes |
//! | [`Reply<T>`] | one record with its own key, headers, topic or partition |
//! | `Result<R, E>` | `R`'s replies; `Err` is a failed delivery, nothing is sent |
//!
//! Each reply carries the request's key (unless a [`Reply`] sets one), the request's
//! `kafka_correlationId` header as it came (Spring's `ReplyingKafkaTemplate` matches on it),
//! the partition the request asked for in `kafka_replyPartition`, and the correlation id and
//! trace context that everything a handler sends inherits. A `send_to` topic wins over the
//! request's `kafka_replyTopic`; with neither, the reply is dropped with a debug line, as in
//! Spring.
//!
//! The request is acknowledged only after every reply was delivered: a reply that fails is a
//! failed delivery (back-off, then the recoverer), even when the handler acknowledged the
//! record with its `Ack`. Replies of an attempt that failed may have been sent already: they
//! are sent again with the next attempt (at least once).

mod request;
mod send_to;

pub use request::RequestError;
pub(crate) use request::{correlation_id, ReplyReader};
pub(crate) use send_to::not_sent;

#[doc(hidden)]
pub use send_to::{
    Finish, NoReply, Probe, ReplyTo, ReplyValue, ValueReply, ViaHandlerResult, ViaReply,
};

use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::config::Format;

/// The header naming the topic a request wants its reply on (Spring's `KafkaHeaders.REPLY_TOPIC`):
/// the topic's name in UTF-8.
pub const REPLY_TOPIC_HEADER: &str = "kafka_replyTopic";

/// The header naming the partition a request wants its reply on (Spring's
/// `KafkaHeaders.REPLY_PARTITION`): four bytes, big-endian.
pub const REPLY_PARTITION_HEADER: &str = "kafka_replyPartition";

/// The header that pairs a reply with its request (Spring's `KafkaHeaders.CORRELATION_ID`);
/// copied from the request onto each reply byte for byte.
pub const CORRELATION_ID_HEADER: &str = "kafka_correlationId";

/// The header of a reply that answers with an error (Spring's `KafkaHeaders.EXCEPTION_MESSAGE`):
/// the requester's `send_and_receive` gives [`RequestError::Remote`] with its text.
pub const EXCEPTION_MESSAGE_HEADER: &str = "kafka_exception-message";

/// A reply with more than a value: its own key, headers, topic or partition (Spring's
/// `Message<?>` return type).
///
/// ```
/// use kafka_runtime::prelude::*;
/// use kafka_runtime::reply::Reply;
/// # #[derive(serde::Deserialize)] struct Order { id: u64 }
///
/// #[kafka_listener(topics = "orders", group = "audit", send_to = "orders.audited")]
/// async fn audit(Payload(order): Payload<Order>) -> Reply<String> {
///     Reply::new(format!("order {} seen", order.id))
///         .key(&order.id.to_string())
///         .header("source", "audit")
/// }
/// ```
#[must_use = "a reply is sent only when the handler returns it"]
pub struct Reply<T> {
    /// `None`: a reply with a null value (an error reply).
    value: Option<T>,
    key: Option<Box<dyn EncodeKey>>,
    headers: Vec<(String, Vec<u8>)>,
    topic: Option<String>,
    partition: Option<i32>,
}

impl<T> Reply<T> {
    /// A reply of `value`, encoded per `producer.value-serializer`.
    pub fn new(value: T) -> Self {
        Reply {
            value: Some(value),
            key: None,
            headers: Vec::new(),
            topic: None,
            partition: None,
        }
    }

    /// A reply that answers with an error: a null value and Spring's `kafka_exception-message`
    /// header holding `message`; the requester's `send_and_receive` gives
    /// [`RequestError::Remote`].
    pub fn error(message: impl std::fmt::Display) -> Self {
        Reply {
            value: None,
            key: None,
            headers: vec![(
                EXCEPTION_MESSAGE_HEADER.to_owned(),
                message.to_string().into_bytes(),
            )],
            topic: None,
            partition: None,
        }
    }

    /// Sets the key (encoded per `producer.key-serializer`) instead of the request's.
    pub fn key<K>(mut self, key: &K) -> Self
    where
        K: ToOwned + ?Sized,
        K::Owned: Serialize + Send + 'static,
    {
        self.key = Some(Box::new(key.to_owned()));
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Sends this reply to `topic` instead of the listener's reply topic.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sends this reply to `partition` instead of the one the request asked for or the key
    /// hashes to.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// A reply's key, encoded when the reply is sent (the template's key format is known then).
trait EncodeKey: Send {
    fn encode(&self, format: Format) -> Result<Vec<u8>, CodecError>;
}

impl<K: Serialize + Send + 'static> EncodeKey for K {
    fn encode(&self, format: Format) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, format)
    }
}
