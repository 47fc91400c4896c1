//! What a service can react to in its listeners' consumers: partitions assigned and revoked
//! (Spring's `ConsumerAwareRebalanceListener`) and a consumer gone idle (Spring's
//! `ListenerContainerIdleEvent`).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// The application's callbacks for its listeners' consumers, registered with
/// [`KafkaApplication::with_events`](crate::KafkaApplication::with_events). They run on the
/// consumer's own thread, between its polls: keep them short (a rebalance waits for them), and
/// hand longer work to a task. A panic in one is logged and ignored.
///
/// ```
/// use std::time::Duration;
/// use kafka_runtime::{ConsumerEvent, ListenerEvents};
///
/// struct Watch;
///
/// impl ListenerEvents for Watch {
///     fn partitions_assigned(&self, consumer: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
///         tracing::info!(listener = consumer.listener, ?partitions, "assigned");
///     }
///     fn idle(&self, consumer: &ConsumerEvent<'_>, idle_for: Duration) {
///         tracing::info!(consumer = consumer.consumer, ?idle_for, "nothing to do");
///     }
/// }
/// ```
pub trait ListenerEvents: Send + Sync + 'static {
    /// The group gave the consumer these partitions; their records are read from the committed
    /// offsets on.
    fn partitions_assigned(&self, consumer: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let _ = (consumer, partitions);
    }

    /// The group took these partitions away; what their handlers acknowledged was committed
    /// first.
    fn partitions_revoked(&self, consumer: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let _ = (consumer, partitions);
    }

    /// The consumer handled no record for `idle_for` (at least `listener.idle-event-interval`);
    /// told again every interval while it stays idle.
    fn idle(&self, consumer: &ConsumerEvent<'_>, idle_for: Duration) {
        let _ = (consumer, idle_for);
    }
}

/// Which consumer an event is about.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ConsumerEvent<'a> {
    /// The listener's id.
    pub listener: &'static str,
    /// The consumer's name, `<listener>-<index>`.
    pub consumer: &'a str,
    /// The listener's consumer group.
    pub group: &'a str,
}

/// Tells every one of `events` with `tell`, a panic in one logged and ignored.
pub(crate) fn tell(
    events: &[Box<dyn ListenerEvents>],
    consumer: &ConsumerEvent<'_>,
    tell: impl Fn(&dyn ListenerEvents),
) {
    for listener in events {
        if std::panic::catch_unwind(AssertUnwindSafe(|| tell(listener.as_ref()))).is_err() {
            tracing::error!(
                listener = consumer.listener,
                consumer = consumer.consumer,
                "a listener event callback panicked; ignored"
            );
        }
    }
}
