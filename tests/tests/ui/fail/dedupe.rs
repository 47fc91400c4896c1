use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", dedupe = "header:event_id")]
async fn batch(Batch(_values): Batch<String>) {}

#[kafka_listener(topics = "t", group = "g", dedupe = "value")]
async fn nowhere(Payload(_value): Payload<String>) {}

fn main() {}
