//! Scenario 10: consume-transform-produce. Each 100 B event becomes one enriched JSON record on
//! an output topic, keyed like its input:
//!
//! - raw rdkafka: a `StreamConsumer` and a `FutureProducer`, sends pipelined, each input's
//!   offset stored once its output is delivered (in order): at least once, as fast as rdkafka
//!   goes by hand;
//! - a `send_to` listener (the reply is the output; the input is acknowledged once it is
//!   delivered);
//! - the same listener in transactions (`producer.transaction-id-prefix`, a transaction per
//!   batch read).

use std::sync::Arc;

use kafka_runtime::prelude::*;
use kafka_runtime::Config;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::report::{Report, Row};
use crate::{median, patience, produce_backlog, unique, Broker, Counter, Options, Run, UserEvent};

/// What each event becomes.
#[derive(Serialize)]
pub struct Enriched {
    user_id: String,
    event_type: String,
    email_domain: Option<String>,
}

fn enrich(event: &UserEvent) -> Enriched {
    Enriched {
        user_id: event.user_id.clone(),
        event_type: event.event_type.clone(),
        email_domain: event
            .email
            .as_deref()
            .and_then(|email| email.split_once('@'))
            .map(|(_, domain)| domain.to_owned()),
    }
}

#[kafka_listener(
    id = "bench_transform",
    topics = "${bench.topic}",
    group = "${bench.group}",
    send_to = "${bench.output}",
    auto_startup = false
)]
async fn bench_transform(
    Payload(event): Payload<UserEvent>,
    State(counter): State<Arc<Counter>>,
) -> Enriched {
    counter.hit(event.sent_at);
    enrich(&event)
}

/// Raw rdkafka: consume, transform, produce pipelined, store each offset once delivered.
async fn raw(bootstrap: &str, (input, output): (&str, &str), count: usize) -> Run {
    let counter = Counter::new(count, false);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("raw-transform-{}", unique()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("raw consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("raw producer");
    let consumer = Arc::new(consumer);
    let (sender, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let storing = {
        let (consumer, counter, input) = (
            Arc::clone(&consumer),
            Arc::clone(&counter),
            input.to_owned(),
        );
        tokio::spawn(async move {
            while let Some((delivery, (partition, offset), sent_at)) = delivered.recv().await {
                let delivery: rdkafka::producer::DeliveryFuture = delivery;
                if let Ok(Ok(_)) = delivery.await {
                    consumer
                        .store_offset(&input, partition, offset)
                        .expect("offset is stored");
                    counter.hit(sent_at);
                }
            }
        })
    };
    let reading = async {
        loop {
            let message = consumer.recv().await.expect("raw consumer");
            let event: UserEvent = serde_json::from_slice(message.payload().unwrap_or_default())
                .expect("decodable record");
            let value = serde_json::to_vec(&enrich(&event)).expect("encodable");
            let mut record = FutureRecord::<[u8], [u8]>::to(output).payload(&value);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            let delivery = producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .expect("queued");
            let _ = sender.send((
                delivery,
                (message.partition(), message.offset()),
                event.sent_at,
            ));
        }
    };
    tokio::select! {
        () = reading => {}
        () = tokio::time::sleep(patience(counter.target)) => {}
        run = counter.wait(patience(counter.target)) => { storing.abort(); return run; }
    }
    storing.abort();
    counter.wait(std::time::Duration::ZERO).await
}

/// The `send_to` listener, transactional or not.
async fn listener(
    broker: &Broker,
    (input, output): (&str, &str),
    count: usize,
    transactional: bool,
) -> Run {
    let counter = Counter::new(count, false);
    let toml = if transactional {
        "[kafka.producer]\ntransaction-id-prefix = \"bench-\"\n"
    } else {
        ""
    };
    let config = Config::from_toml_str(toml, "bench")
        .expect("bench config")
        .with_bootstrap_servers(broker.bootstrap());
    let running = broker
        .application(config)
        .with_listeners(["bench_transform"])
        .with_property("bench.topic", input)
        .with_property("bench.output", output)
        .with_property("bench.group", format!("transform-{}", unique()))
        .with_state(Arc::clone(&counter))
        .start()
        .await
        .expect("listener starts");
    let run = counter.wait(patience(count as u64)).await;
    running.shutdown().await;
    run
}

/// Scenario 10; gives the median ratio send_to/raw.
pub async fn run(broker: &Broker, options: &Options, report: &mut Report) -> f64 {
    let count = broker.capacity(options.count / 4, 100);
    let input = broker.topic("transform-in").await;
    produce_backlog(broker.bootstrap(), &input, count, 100);
    let (mut raws, mut replies, mut transactions) = (vec![], vec![], vec![]);
    let (mut ratios, mut transaction_ratios) = (vec![], vec![]);
    for round in 0..options.rounds {
        let output = broker.topic("transform-out").await;
        let raw = raw(broker.bootstrap(), (&input, &output), count).await;
        let output = broker.topic("transform-out").await;
        let reply = listener(broker, (&input, &output), count, false).await;
        let output = broker.topic("transform-out").await;
        let transaction = listener(broker, (&input, &output), count, true).await;
        eprintln!(
            "  transform round {}: raw {:.0}/s, send_to {:.0}/s, transactional {:.0}/s, ratio {:.3}",
            round + 1,
            raw.per_second,
            reply.per_second,
            transaction.per_second,
            reply.per_second / raw.per_second
        );
        ratios.push(reply.per_second / raw.per_second);
        raws.push(raw.per_second);
        replies.push(reply.per_second);
        transactions.push(transaction.per_second);
        transaction_ratios.push(transaction.per_second / raw.per_second);
    }
    let ratio = median(&mut ratios);
    report.rows.push(Row::new(
        "transform 100 B: raw rdkafka (10)",
        median(&mut raws),
        "msg/s",
    ));
    report.rows.push(
        Row::new(
            "transform 100 B: send_to listener (10)",
            median(&mut replies),
            "msg/s",
        )
        .with_ratio("send_to/raw", ratio),
    );
    report.rows.push(
        Row::new(
            "transform 100 B: transactional send_to (10)",
            median(&mut transactions),
            "msg/s",
        )
        .with_ratio("transactional/raw", median(&mut transaction_ratios)),
    );
    ratio
}
