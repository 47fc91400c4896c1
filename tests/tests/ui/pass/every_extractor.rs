use kafka_runtime::prelude::*;

#[derive(serde::Deserialize)]
struct UserEvent {
    event_type: String,
}

#[derive(Clone)]
struct Db;

#[kafka_listener(topics = ["user-events", "user-events-v2"], group = "g", id = "all", concurrency = 3, ack_mode = "manual", auto_startup = false)]
async fn all(
    Payload(event): Payload<UserEvent>,
    key: Option<Key<String>>,
    headers: Headers,
    metadata: Metadata,
    record: ConsumerRecord,
    DeliveryAttempt(attempt): DeliveryAttempt,
    State(_db): State<Db>,
    _template: KafkaTemplate,
    ack: Ack,
) -> Result<(), HandlerError> {
    let _ = (event.event_type, key, headers.get_str("x"), metadata.offset, record.offset, attempt);
    ack.acknowledge();
    Ok(())
}

#[kafka_listener(topics = "raw", group = "g")]
async fn raw(Payload(_text): Payload<String>, Payload(_bytes): Payload<Vec<u8>>) -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_listener(topics = "orders", group = "g", ack_mode = "manual")]
async fn batch(
    Batch(events): Batch<UserEvent>,
    DeliveryAttempt(_attempt): DeliveryAttempt,
    State(_db): State<Db>,
    _template: KafkaTemplate,
    ack: BatchAck,
) -> Result<(), BatchError> {
    for (index, event) in events.iter().enumerate() {
        if event.payload.event_type.is_empty() {
            return Err(BatchError::at(index, HandlerError::new("no type")));
        }
    }
    ack.acknowledge();
    Ok(())
}

fn main() {}
