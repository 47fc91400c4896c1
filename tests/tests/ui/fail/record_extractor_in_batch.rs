use kafka_runtime::prelude::*;

#[kafka_listener(topics = "orders", group = "g")]
async fn handle(Batch(_orders): Batch<String>, Key(_key): Key<String>) {}

fn main() {}
