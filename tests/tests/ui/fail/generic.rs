use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g")]
async fn handle<T: serde::de::DeserializeOwned + Send + 'static>(Payload(_value): Payload<T>) {}

fn main() {}
