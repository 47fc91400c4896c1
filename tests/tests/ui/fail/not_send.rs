use std::rc::Rc;

use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g")]
async fn handle(Payload(value): Payload<String>) {
    let shared = Rc::new(value);
    tokio::task::yield_now().await;
    drop(shared);
}

fn main() {}
