use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", group = "h")]
async fn handle(Payload(_value): Payload<String>) {}

fn main() {}
