//! Every shape of reply compiles, and an alias of a handler result stays one.
use kafka_runtime::prelude::*;

#[derive(serde::Serialize)]
struct Priced {
    total: u64,
}

type Handled = Result<(), HandlerError>;

#[kafka_listener(topics = "t", group = "g", send_to = "${replies:priced}")]
async fn value(Payload(amount): Payload<u64>) -> Priced {
    Priced { total: amount }
}

#[kafka_listener(topics = "t", group = "g")]
async fn fallible(Payload(amount): Payload<u64>) -> anyhow_like::Result<Option<Vec<Priced>>> {
    Ok(Some(vec![Priced { total: amount }]))
}

#[kafka_listener(topics = "t", group = "g")]
async fn bytes(Payload(raw): Payload<Vec<u8>>) -> Option<Vec<u8>> {
    Some(raw)
}

#[kafka_listener(topics = "t", group = "g")]
async fn record(Key(key): Key<String>) -> Result<Reply<Priced>, std::io::Error> {
    Ok(Reply::new(Priced { total: 1 }).key(&key).header("h", "v").partition(0))
}

#[kafka_listener(topics = "t", group = "g")]
async fn aliased(Payload(_amount): Payload<u64>) -> Handled {
    Ok(())
}

mod anyhow_like {
    pub type Result<T> = std::result::Result<T, kafka_runtime::HandlerError>;
}

fn main() {}
