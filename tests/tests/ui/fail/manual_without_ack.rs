use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", ack_mode = "manual")]
async fn handle(Payload(_value): Payload<String>) {}

fn main() {}
