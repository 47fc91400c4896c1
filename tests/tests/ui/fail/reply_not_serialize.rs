use kafka_runtime::prelude::*;

struct Priced;

#[kafka_listener(topics = "t", group = "g", send_to = "priced")]
async fn handle(Payload(_value): Payload<String>) -> Result<Option<Priced>, HandlerError> {
    Ok(None)
}

fn main() {}
