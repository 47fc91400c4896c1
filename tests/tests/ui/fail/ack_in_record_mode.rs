use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", ack_mode = "record")]
async fn handle(Payload(_value): Payload<String>, ack: Ack) {
    ack.acknowledge();
}

fn main() {}
