//! Two listeners with one id in one binary are rejected at startup, naming both functions.

use kafka_runtime::prelude::*;
use kafka_runtime::{Config, Error};

#[kafka_listener(id = "orders", topics = "orders", group = "g")]
async fn first(Payload(_value): Payload<String>) {}

#[kafka_listener(id = "orders", topics = "orders-v2", group = "g")]
async fn second(Payload(_value): Payload<String>) {}

#[tokio::test]
async fn duplicate_listener_ids_are_rejected() {
    let error = match KafkaApplication::new(Config::default()).start().await {
        Ok(app) => {
            app.shutdown().await;
            panic!("duplicate ids started");
        }
        Err(error) => error,
    };
    assert!(matches!(error, Error::DuplicateListener { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains("`orders`"), "{text}");
    assert!(
        text.contains("duplicate_ids::first") && text.contains("duplicate_ids::second"),
        "{text}"
    );
}
