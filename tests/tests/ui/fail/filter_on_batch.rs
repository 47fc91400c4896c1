use kafka_runtime::extract::RecordContext;
use kafka_runtime::prelude::*;

fn heartbeat(record: &RecordContext<'_>) -> bool {
    record.header("type") == Some(&b"heartbeat"[..])
}

#[kafka_listener(topics = "t", group = "g", filter = heartbeat)]
async fn handle(Batch(_values): Batch<String>) {}

#[kafka_listener(topics = "t", group = "g", filter = "heartbeat")]
async fn quoted(Payload(_value): Payload<String>) {}

fn main() {}
