use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", filter = "heartbeat")]
async fn quoted(Payload(_value): Payload<String>) {}

fn main() {}
