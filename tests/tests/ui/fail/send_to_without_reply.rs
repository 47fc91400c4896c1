use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", group = "g", send_to = "replies")]
async fn handle(Payload(_value): Payload<String>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
