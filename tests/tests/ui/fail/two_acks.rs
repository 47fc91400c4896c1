use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", ack_mode = "manual")]
async fn handle(first: Ack, second: Ack) {
    first.acknowledge();
    second.acknowledge();
}

fn main() {}
