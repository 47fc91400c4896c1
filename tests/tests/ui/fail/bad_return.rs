use kafka_runtime::prelude::*;

struct NotAReply;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Payload(_value): Payload<String>) -> NotAReply {
    NotAReply
}

fn main() {}
