use kafka_runtime::prelude::*;

struct Service;

impl Service {
    #[kafka_listener(topics = "t", group = "g")]
    async fn handle(&self, Payload(_value): Payload<String>) {}
}

fn main() {}
