//! Prometheus metrics through the `metrics` facade: what containers and the template record,
//! and the recorder that `/metrics` renders.
//!
//! Handles are built once per partition worker (labels resolved then), so recording on the hot
//! path is an atomic add. Without an installed recorder every handle is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

pub(crate) const RECEIVED: &str = "kafka_listener_records_received_total";
pub(crate) const HANDLED: &str = "kafka_listener_records_handled_total";
pub(crate) const FAILED: &str = "kafka_listener_records_failed_total";
pub(crate) const RETRIED: &str = "kafka_listener_records_retried_total";
pub(crate) const FILTERED: &str = "kafka_listener_records_filtered_total";
pub(crate) const DEDUPLICATED: &str = "kafka_listener_records_deduplicated_total";
pub(crate) const DEAD_LETTERED: &str = "kafka_listener_records_dead_lettered_total";
pub(crate) const RECOVERY_FAILURES: &str = "kafka_listener_recovery_failures_total";
pub(crate) const HANDLER_SECONDS: &str = "kafka_listener_handler_seconds";
pub(crate) const COMMIT_SECONDS: &str = "kafka_consumer_commit_seconds";
pub(crate) const COMMIT_FAILURES: &str = "kafka_consumer_commit_failures_total";
pub(crate) const LAG: &str = "kafka_consumer_lag";
pub(crate) const SEND_SECONDS: &str = "kafka_producer_send_seconds";
pub(crate) const SEND_ERRORS: &str = "kafka_producer_send_errors_total";

/// Latency buckets from 100 µs to 30 s: handlers and commits span that range.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// Lag gauges of partitions no longer reported (revoked, or the consumer gone) disappear after
/// this long instead of showing a stale value forever.
const GAUGE_IDLE: Duration = Duration::from_secs(60);

/// The process's recorder: the first application with a management port installs it.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process) and
/// returns its handle; `None` when the program installed a recorder of its own.
pub(crate) fn install() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS);
            let builder = match builder {
                Ok(builder) => builder,
                Err(error) => {
                    tracing::warn!(%error, "cannot configure the metrics recorder");
                    return None;
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder is already installed; /metrics stays empty, the application's recorder gets the metrics"
                );
                return None;
            }
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(
        RECEIVED,
        "Records delivered to a listener's handler, redeliveries included"
    );
    describe_counter!(HANDLED, "Records whose handler succeeded");
    describe_counter!(
        FAILED,
        "Deliveries that failed: handler error, panic or undecodable record"
    );
    describe_counter!(RETRIED, "Redeliveries of a record after a failed delivery");
    describe_counter!(
        FILTERED,
        "Records a listener's filter discarded (acknowledged without calling the handler)"
    );
    describe_counter!(
        DEDUPLICATED,
        "Records an idempotent receiver (`dedupe`) skipped: their id was processed before"
    );
    describe_counter!(DEAD_LETTERED, "Records published to a dead-letter topic");
    describe_counter!(
        RECOVERY_FAILURES,
        "Dead-letter or retry-topic publications that failed (the record stays uncommitted)"
    );
    describe_histogram!(
        HANDLER_SECONDS,
        Unit::Seconds,
        "Handler run time per delivery"
    );
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Offset commit round trips");
    describe_counter!(
        COMMIT_FAILURES,
        "Offset commits the broker refused or that timed out"
    );
    describe_gauge!(
        LAG,
        "Records between a partition's end and the group's committed offset"
    );
    describe_histogram!(
        SEND_SECONDS,
        Unit::Seconds,
        "Template sends, until the broker acknowledged"
    );
    describe_counter!(SEND_ERRORS, "Template sends that failed");
}

/// One partition worker's handles.
pub(crate) struct RecordMetrics {
    pub(crate) received: Counter,
    pub(crate) handled: Counter,
    pub(crate) failed: Counter,
    pub(crate) retried: Counter,
    pub(crate) filtered: Counter,
    /// Records an idempotent receiver skipped as processed before.
    pub(crate) deduplicated: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) recovery_failures: Counter,
    pub(crate) handler_seconds: Histogram,
}

impl RecordMetrics {
    pub(crate) fn new(listener: &'static str, topic: &str) -> Self {
        let labels = [
            ("listener", listener.to_owned()),
            ("topic", topic.to_owned()),
        ];
        RecordMetrics {
            received: metrics::counter!(RECEIVED, &labels),
            handled: metrics::counter!(HANDLED, &labels),
            failed: metrics::counter!(FAILED, &labels),
            retried: metrics::counter!(RETRIED, &labels),
            filtered: metrics::counter!(FILTERED, &labels),
            deduplicated: metrics::counter!(DEDUPLICATED, &labels),
            dead_lettered: metrics::counter!(DEAD_LETTERED, &labels),
            recovery_failures: metrics::counter!(RECOVERY_FAILURES, &labels),
            handler_seconds: metrics::histogram!(HANDLER_SECONDS, &labels),
        }
    }
}

/// One consumer's commit handles.
pub(crate) struct CommitMetrics {
    pub(crate) seconds: Histogram,
    pub(crate) failures: Counter,
}

impl CommitMetrics {
    pub(crate) fn new(listener: &'static str) -> Self {
        let labels = [("listener", listener.to_owned())];
        CommitMetrics {
            seconds: metrics::histogram!(COMMIT_SECONDS, &labels),
            failures: metrics::counter!(COMMIT_FAILURES, &labels),
        }
    }
}

/// Sets a partition's lag gauge.
pub(crate) fn lag(listener: &'static str, group: &str, topic: &str, partition: i32, lag: i64) {
    let labels = [
        ("listener", listener.to_owned()),
        ("group", group.to_owned()),
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ];
    // Lag fits an f64 exactly up to 2^53 records.
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(LAG, &labels).set(lag as f64);
}

/// Records one template send.
pub(crate) fn send(topic: &str, elapsed: Duration, ok: bool) {
    metrics::histogram!(SEND_SECONDS).record(elapsed.as_secs_f64());
    if !ok {
        metrics::counter!(SEND_ERRORS, "topic" => topic.to_owned()).increment(1);
    }
}
