use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", ack_mode = "manul")]
async fn handle(ack: Ack) {
    ack.acknowledge();
}

fn main() {}
