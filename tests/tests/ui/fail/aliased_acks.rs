use kafka_runtime::prelude::*;

/// An alias is still an `Ack`: the check goes by type, not by the name written.
type Token = Ack;

#[kafka_listener(topics = "t", group = "g", ack_mode = "manual")]
async fn handle(first: Ack, second: Token) {
    first.acknowledge();
    second.acknowledge();
}

fn main() {}
