use kafka_runtime::prelude::*;

struct NotDeserializable;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Payload(_value): Payload<NotDeserializable>) {}

fn main() {}
