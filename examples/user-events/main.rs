//! The seed's user-events consumer as a service: a manual-ack `#[kafka_listener]` that dispatches
//! on `event_type`, the way the seed's Java `UserEventConsumer` does.
//!
//! Run it with `cargo run --example user-events` (`-- --help` lists the command line:
//! `--config`, `--profile`, `--set`, `--print-config`, `--check`). Its configuration is the seed's Spring Boot YAML
//! in TOML (`examples/user-events/application.toml`, or `application.toml` in the working
//! directory if there is one): manual acks, concurrency 3, and the seed's `consume_with_dlq`
//! policy — 3 retries, then `user-events.DLT`. Without `bootstrap-servers` (or
//! `KAFKA_BOOTSTRAP_SERVERS`) it starts an embedded Kafka and produces the seed's sample events
//! to it, so that a first run shows them handled. Stop it with Ctrl-C.

use std::process::ExitCode;

use kafka_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The seed's user event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserEvent {
    event_type: String,
    user_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

// `${name:default}` as in Spring: USER_EVENTS_TOPIC / USER_EVENTS_GROUP override the seed's names.
#[kafka_listener(
    topics = "${user-events.topic:user-events}",
    group = "${user-events.group:my-consumer-group}",
    ack_mode = "manual"
)]
async fn handle_user_event(
    Payload(event): Payload<UserEvent>,
    Key(key): Key<String>,
    ack: Ack,
) -> Result<(), HandlerError> {
    // `run()`'s log lines add the record: listener, topic, partition, offset, correlation_id.
    info!(key, event_type = %event.event_type, "Processing event");
    if event.user_id.is_empty() {
        // The seed's Java consumer rethrows; here the record is retried, then dead-lettered.
        return Err(HandlerError::new("user_id is empty"));
    }
    match event.event_type.as_str() {
        "user_created" => info!(user_id = %event.user_id, email = ?event.email, "user created"),
        "user_updated" => info!(user_id = %event.user_id, "user updated"),
        "user_deleted" => info!(user_id = %event.user_id, "user deleted"),
        other => warn!(event_type = other, "Unknown event type"),
    }
    ack.acknowledge();
    Ok(())
}

/// The seed's usage example: user-123's events, with a `correlation_id` header; and one event
/// the handler cannot process, to show the retries and the dead-letter topic.
async fn produce_sample_events(
    template: &KafkaTemplate,
    topic: &str,
) -> Result<(), kafka_runtime::SendError> {
    let events = [
        ("user-123", "user_created", "123"),
        ("user-123", "user_updated", "123"),
        ("user-123", "user_deleted", "123"),
        ("user-123", "user_exported", "123"),
        ("user-456", "user_updated", ""),
    ];
    for (n, (key, event_type, user_id)) in events.into_iter().enumerate() {
        let event = UserEvent {
            event_type: event_type.to_owned(),
            user_id: user_id.to_owned(),
            email: Some("user@example.com".to_owned()),
            timestamp: Some("2026-11-28T00:00:00Z".to_owned()),
        };
        template
            .record(topic)
            .key(key)
            .header("correlation_id", format!("abc-{}", 123 + n))
            .send(&event)
            .await?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let bundled = (
        include_str!("application.toml"),
        "examples/user-events/application.toml",
    );
    kafka_runtime::cli::run_bundled(Some(bundled), |app| app, serve)
}

async fn serve(app: KafkaApplication) -> Result<(), Box<dyn std::error::Error>> {
    let embedded = app.config().uses_embedded_broker();
    let running = app.start().await?;
    if embedded {
        let topic = std::env::var("USER_EVENTS_TOPIC").unwrap_or_else(|_| "user-events".to_owned());
        produce_sample_events(running.template(), &topic).await?;
        info!("produced the seed's sample events to the embedded Kafka");
    }
    running.run_until_signal().await?;
    Ok(())
}
