//! The `#[kafka_listener]` attribute of `kafka-runtime`. Use it through `kafka_runtime`, which
//! re-exports it; the generated code refers to `::kafka_runtime`.

mod attr;
mod expand;
mod reply;

use proc_macro::TokenStream;

/// Registers an async function as a Kafka listener.
///
/// ```ignore
/// #[kafka_listener(topics = "user-events", group = "my-consumer-group", ack_mode = "manual")]
/// async fn handle(Payload(event): Payload<UserEvent>, Key(key): Key<String>, ack: Ack) -> Result<(), HandlerError> {
///     ack.acknowledge();
///     Ok(())
/// }
/// ```
///
/// Keys: `topics` (a string or a list of strings) or `topic_pattern` (a regular expression the
/// whole topic name matches; topics created later are picked up at the next metadata refresh),
/// `group`, `id` (default: the function's name), `concurrency`, `ack_mode` (`record`, `batch`,
/// `time`, `count`, `count_time`, `manual`, `manual_immediate`), `auto_startup` (default
/// `true`), `batch` (default: whether an argument is a `Batch<T>` or a `BatchAck`), `ordering`
/// (`partition`, `key`, `none`), `send_to` (the topic the handler's return value is sent to; see
/// `kafka_runtime::reply`), `filter` (a `fn(&RecordContext<'_>) -> bool`; `true` discards the
/// record), `dedupe` (`key` or `header:<name>`: the idempotent receiver skips a record whose id
/// was processed; see `kafka_runtime::dedupe`), `partitions` (`"0, 2, 4-6"`: these partitions of `topics` are assigned, without the
/// group's rebalancing) and `initial_offset` (where they start: `earliest`, `latest`, `42`, `-10`
/// from the end, `timestamp:<epoch millis>`; default: the group's committed offset).
///
/// Every argument must implement `kafka_runtime::extract::FromRecord`, or for a batch listener
/// `kafka_runtime::batch::FromBatch`; the function stays callable as written.
#[proc_macro_attribute]
pub fn kafka_listener(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::kafka_listener(args.into(), item.into()).into()
}
