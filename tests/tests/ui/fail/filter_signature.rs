use kafka_runtime::prelude::*;

/// Takes the payload, not the record.
fn heartbeat(payload: &str) -> bool {
    payload == "beat"
}

#[kafka_listener(topics = "t", group = "g", filter = heartbeat)]
async fn handle(Payload(_value): Payload<String>) {}

fn main() {}
