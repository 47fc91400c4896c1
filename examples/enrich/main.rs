//! A consume-transform-produce pipeline, exactly once: each `user-events` record becomes one
//! enriched JSON record on `user-events.enriched`, with the input's key and its
//! `correlation_id` header, in a Kafka transaction with the consumed offset (its bundled
//! `application.toml` sets `producer.transaction-id-prefix`). Killed at any point and restarted,
//! a `read_committed` reader of the output sees every input once; an input the handler cannot
//! process goes to `user-events.DLT` and leaves no visible output.
//!
//! ```text
//! cargo run --example enrich                                   # embedded Kafka, sample events
//! KAFKA_BOOTSTRAP_SERVERS=localhost:9092 cargo run --example enrich
//! ```
//!
//! `ENRICH_INPUT` / `ENRICH_OUTPUT` (or the `enrich.input` / `enrich.output` properties) rename
//! the topics; the command line is `kafka_runtime::run`'s (`--config`, `--set`, ...).

use std::process::ExitCode;

use kafka_runtime::prelude::*;
use serde::{Deserialize, Serialize};

/// The seed's user event.
#[derive(Debug, Deserialize, Serialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
    #[serde(default)]
    email: Option<String>,
}

/// What the pipeline writes for each event.
#[derive(Debug, Serialize)]
struct EnrichedEvent {
    event_type: String,
    user_id: String,
    email_domain: Option<String>,
    /// Where the event came from: `topic-partition@offset`.
    source: String,
}

/// The reply is the output record: `send_to` gives it the input's key, and the template gives it
/// the input's `correlation_id`; both go out in the batch's transaction.
#[kafka_listener(
    id = "enrich",
    topics = "${enrich.input:user-events}",
    send_to = "${enrich.output:user-events.enriched}"
)]
async fn enrich(
    Payload(event): Payload<UserEvent>,
    metadata: Metadata,
) -> Result<EnrichedEvent, HandlerError> {
    if event.user_id.is_empty() {
        return Err(HandlerError::non_retryable("user_id is empty"));
    }
    Ok(EnrichedEvent {
        email_domain: event
            .email
            .as_deref()
            .and_then(|email| email.split_once('@'))
            .map(|(_, domain)| domain.to_owned()),
        source: format!(
            "{}-{}@{}",
            metadata.topic, metadata.partition, metadata.offset
        ),
        event_type: event.event_type,
        user_id: event.user_id,
    })
}

fn main() -> ExitCode {
    let bundled = (
        include_str!("application.toml"),
        "examples/enrich/application.toml",
    );
    kafka_runtime::cli::run_bundled(Some(bundled), |app| app.with_listeners(["enrich"]), serve)
}

async fn serve(app: KafkaApplication) -> Result<(), Box<dyn std::error::Error>> {
    let embedded = app.config().uses_embedded_broker();
    let running = app.start().await?;
    if embedded {
        // A first run shows the pipeline at work: three events in, three enriched out, and one
        // the handler refuses (dead-lettered, no output).
        let input = std::env::var("ENRICH_INPUT").unwrap_or_else(|_| "user-events".to_owned());
        for (n, (user_id, event_type)) in [
            ("123", "user_created"),
            ("123", "user_updated"),
            ("456", "user_created"),
            ("", "user_deleted"),
        ]
        .into_iter()
        .enumerate()
        {
            let event = UserEvent {
                event_type: event_type.to_owned(),
                user_id: user_id.to_owned(),
                email: Some(format!("user{user_id}@example.com")),
            };
            running
                .template()
                .record(&input)
                .key(&format!("user-{user_id}"))
                .header("correlation_id", format!("abc-{n}"))
                .send(&event)
                .await?;
        }
        tracing::info!("produced sample events to the embedded Kafka");
    }
    running.run_until_signal().await?;
    Ok(())
}
