use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", grop = "g")]
async fn handle(Payload(_value): Payload<String>) {}

fn main() {}
