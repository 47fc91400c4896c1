use kafka_runtime::prelude::*;

#[kafka_listener(topics = "t", topic_pattern = "t-.*", group = "g")]
async fn both(Payload(_value): Payload<String>) {}

#[kafka_listener(topic_pattern = "t-.*", partitions = "0", group = "g")]
async fn partitions_of_a_pattern(Payload(_value): Payload<String>) {}

#[kafka_listener(topics = "t", initial_offset = "earliest", group = "g")]
async fn initial_without_partitions(Payload(_value): Payload<String>) {}

#[kafka_listener(topics = "t", partitions = "0, a", group = "g")]
async fn bad_partitions(Payload(_value): Payload<String>) {}

#[kafka_listener(topics = "t", partitions = "0", initial_offset = "soon", group = "g")]
async fn bad_initial_offset(Payload(_value): Payload<String>) {}

fn main() {}
