use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Payload(_value): Payload<String>) -> u32 {
    7
}

fn main() {}
