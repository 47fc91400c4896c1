use kafka_runtime::prelude::*;

#[kafka_listener(group = "g")]
async fn handle(Payload(_value): Payload<String>) {}

fn main() {}
