use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Batch(values): Batch<String>) -> Vec<String> {
    values.into_iter().map(|record| record.payload).collect()
}

fn main() {}
