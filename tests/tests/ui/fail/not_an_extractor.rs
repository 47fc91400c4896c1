use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Payload(_value): Payload<String>, flag: bool) {
    let _ = flag;
}

fn main() {}
