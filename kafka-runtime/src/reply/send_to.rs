//! The reply side of a listener: where its handler's return value goes, and how it is sent.
//!
//! The macro builds a [`ReplyTo`] from the request before the handler runs (the record is
//! borrowed only then), pushes each reply the return value holds, and sends them when the
//! handler returns. Which return types are replies is decided by their shape (`Result`,
//! `Option`, `Vec`, `Reply`) and, for any other type, by [`Probe`]: a type that is a handler
//! result (`()`, an alias of `Result<(), E>`) is not a reply; one that is `Serialize` is.

use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::FutureExt;
use serde::Serialize;

use super::{Reply, CORRELATION_ID_HEADER, REPLY_PARTITION_HEADER, REPLY_TOPIC_HEADER};
use crate::codec;
use crate::extract::RecordContext;
use crate::handling::PendingReplies;
use crate::listener::{HandlerError, IntoHandlerResult};
use crate::template::{KafkaTemplate, SendError};

/// A value a handler may return as its reply.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a listener's reply",
    label = "not Serialize",
    note = "a handler returns `()`, `Result<(), E>`, or a reply: a `Serialize` value, an Option or a Vec of them, or a `Reply<T>`, optionally in a `Result<_, E>`"
)]
pub trait ReplyValue: Serialize + Send + 'static {}

impl<T: Serialize + Send + 'static> ReplyValue for T {}

/// One reply, encoded, waiting to be sent.
struct Outgoing {
    topic: Option<String>,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    /// `None`: a null value.
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Where a request's replies go, and the replies its handler returned.
pub struct ReplyTo {
    template: KafkaTemplate,
    topic: Option<Arc<str>>,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    correlation: Option<Vec<u8>>,
    replies: Vec<Outgoing>,
    /// The first reply that could not be encoded.
    unencodable: Option<HandlerError>,
}

impl ReplyTo {
    /// Reads the request's reply destination: the listener's `send_to` topic, else the
    /// request's `kafka_replyTopic`; the partition from `kafka_replyPartition`. Headers that
    /// are not what Spring writes (not UTF-8, not four bytes) are ignored with a warning.
    pub fn of(ctx: &RecordContext<'_>) -> Self {
        let topic = ctx.reply_topic().cloned().or_else(|| {
            let bytes = ctx.header(REPLY_TOPIC_HEADER)?;
            match std::str::from_utf8(bytes) {
                Ok(topic) if !topic.is_empty() => Some(Arc::from(topic)),
                _ => {
                    malformed(ctx, REPLY_TOPIC_HEADER, "a topic name in UTF-8");
                    None
                }
            }
        });
        let partition = ctx.header(REPLY_PARTITION_HEADER).and_then(|bytes| {
            match <[u8; 4]>::try_from(bytes).map(i32::from_be_bytes) {
                Ok(partition) if partition >= 0 => Some(partition),
                _ => {
                    malformed(
                        ctx,
                        REPLY_PARTITION_HEADER,
                        "a partition as 4 bytes, big-endian",
                    );
                    None
                }
            }
        });
        ReplyTo {
            template: ctx.app().template().clone(),
            topic,
            partition,
            key: ctx.key().map(<[u8]>::to_vec),
            correlation: ctx.header(CORRELATION_ID_HEADER).map(<[u8]>::to_vec),
            replies: Vec::new(),
            unencodable: None,
        }
    }

    /// Adds a reply of `value`.
    pub fn value<T: ReplyValue>(&mut self, value: &T) {
        let (_, value_format) = self.template.formats();
        match codec::encode(value, value_format) {
            Ok(bytes) => self.replies.push(Outgoing {
                topic: None,
                partition: None,
                key: None,
                value: Some(bytes),
                headers: Vec::new(),
            }),
            Err(error) => self.cannot_encode("value", &error),
        }
    }

    /// Adds a reply with its own key, headers, topic or partition.
    pub fn record<T: ReplyValue>(&mut self, reply: Reply<T>) {
        let (key_format, value_format) = self.template.formats();
        let key = match reply.key.map(|key| key.encode(key_format)).transpose() {
            Ok(key) => key,
            Err(error) => return self.cannot_encode("key", &error),
        };
        let value = match reply.value.map(|value| codec::encode(&value, value_format)) {
            None => None,
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(error)) => return self.cannot_encode("value", &error),
        };
        self.replies.push(Outgoing {
            topic: reply.topic,
            partition: reply.partition,
            key,
            value,
            headers: reply.headers,
        });
    }

    fn cannot_encode(&mut self, part: &str, error: &codec::CodecError) {
        if self.unencodable.is_none() {
            self.unencodable = Some(HandlerError::non_retryable(format!(
                "cannot encode the {part} of a reply: {error}"
            )));
        }
    }

    /// Sends the replies, all at once. A reply that could not be encoded or delivered fails the
    /// delivery: the handler's own acknowledgment is withdrawn, so the request is not
    /// committed. The container may wait for their delivery itself (it reads on meanwhile, and
    /// acknowledges the request once they are delivered); else this waits for the broker to
    /// take each. Inside a transaction they are only queued: the commit flushes them.
    pub async fn send(self) -> Result<(), HandlerError> {
        let result = self.deliver().await;
        if result.is_err() {
            crate::handling::withdraw_settlement();
        }
        result
    }

    async fn deliver(self) -> Result<(), HandlerError> {
        if let Some(error) = self.unencodable {
            return Err(error);
        }
        let ReplyTo {
            template,
            topic,
            partition,
            mut key,
            correlation,
            replies,
            ..
        } = self;
        // The last reply takes the request's key rather than a copy (most handlers reply once).
        let last = replies.len().saturating_sub(1);
        let mut sends: Vec<_> = replies
            .into_iter()
            .enumerate()
            .filter_map(|(index, reply)| {
                let Some(destination) = reply.topic.map(Arc::from).or_else(|| topic.clone())
                else {
                    tracing::debug!(
                        "no reply topic: the listener has no send_to and the request no {REPLY_TOPIC_HEADER}; the reply is dropped"
                    );
                    return None;
                };
                let mut headers = reply.headers;
                if let Some(correlation) = &correlation {
                    if !headers.iter().any(|(name, _)| name == CORRELATION_ID_HEADER) {
                        headers.push((CORRELATION_ID_HEADER.to_owned(), correlation.clone()));
                    }
                }
                let key = reply.key.or_else(|| {
                    if index == last {
                        key.take()
                    } else {
                        key.clone()
                    }
                });
                let partition = reply.partition.or(partition);
                Some(template.send_reply(destination, partition, (key, reply.value), headers))
            })
            .collect();
        // A reply not in the producer's queue yet is awaited here: the next record's replies
        // must not overtake it.
        let queued = sends.iter().all(|(_, queued)| *queued);
        let pending: PendingReplies = match sends.len() {
            0 => return Ok(()),
            1 => sends.remove(0).0,
            _ => Box::pin(
                join_all(sends.into_iter().map(|(sent, _)| sent))
                    .map(|sent| sent.into_iter().collect()),
            ),
        };
        let left = if queued {
            crate::handling::defer_replies(pending)
        } else {
            Some(pending)
        };
        match left {
            None => Ok(()),
            Some(pending) => pending.await.map_err(not_sent),
        }
    }
}

/// A reply that was not sent, as the failure of its request's delivery.
pub(crate) fn not_sent(error: SendError) -> HandlerError {
    HandlerError::new(format!("a reply was not sent: {error}"))
}

fn malformed(ctx: &RecordContext<'_>, header: &str, expected: &str) {
    tracing::warn!(
        topic = ctx.topic(),
        partition = ctx.partition(),
        offset = ctx.offset(),
        "header `{header}` is not {expected}; ignored"
    );
}

/// Tells by its type whether a handler's return value is a handler result or a reply (autoref
/// specialization: the type is concrete where the macro writes the call).
pub struct Probe<R>(std::marker::PhantomData<fn() -> R>);

impl<R> Probe<R> {
    /// The probe of `value`'s type.
    pub fn of(_: &R) -> Self {
        Probe(std::marker::PhantomData)
    }
}

/// A return value that is a handler result, not a reply.
pub struct NoReply;

/// A return value that is one reply.
pub struct ValueReply;

/// Chosen first: `()` and `Result<(), E>`, also behind an alias, are handler results.
pub trait ViaHandlerResult {
    /// [`NoReply`].
    fn reply_kind(&self) -> NoReply {
        NoReply
    }
}

impl<R: IntoHandlerResult> ViaHandlerResult for &Probe<R> {}

/// Chosen when the type is no handler result: it must be a reply (`ValueReply::finish` says
/// so at the type, when it cannot).
pub trait ViaReply {
    /// [`ValueReply`].
    fn reply_kind(&self) -> ValueReply {
        ValueReply
    }
}

impl<R> ViaReply for Probe<R> {}

/// What is left to do when the handler returned: nothing, or send its replies.
pub enum Finish {
    /// The handler's result.
    Done(Result<(), HandlerError>),
    /// Replies to send.
    Replies(ReplyTo),
}

impl Finish {
    /// The handler's result, once its replies (if any) are sent.
    pub async fn send(self) -> Result<(), HandlerError> {
        match self {
            Finish::Done(result) => result,
            Finish::Replies(reply) => reply.send().await,
        }
    }
}

impl NoReply {
    /// The handler's result; `reply` is not used.
    pub fn finish<R: IntoHandlerResult>(self, result: R, _: ReplyTo) -> Finish {
        Finish::Done(result.into_handler_result())
    }
}

impl ValueReply {
    /// `value` as the reply. (Not async: the future would carry the bound, and a type that is
    /// no reply would be reported twice.)
    pub fn finish<R: ReplyValue>(self, value: R, mut reply: ReplyTo) -> Finish {
        reply.value(&value);
        Finish::Replies(reply)
    }
}
