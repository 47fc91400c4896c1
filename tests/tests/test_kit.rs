//! The README's "Testing your app": a small two-listener service tested with the kit
//! (`kafka_runtime::test`, feature `test-util`), the way a user tests theirs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::prelude::*;
use kafka_runtime::test::{BrokerError, Outcome, Request, TestHandler, TestKafka, TestRecord};
use serde::{Deserialize, Serialize};

// --- the service under test --------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: String,
    amount: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Confirmation {
    order_id: String,
    status: String,
}

/// Confirms each order on `orders.confirmed`; acknowledges once the confirmation is sent.
#[kafka_listener(
    id = "orders",
    topics = "orders",
    group = "orders-service",
    ack_mode = "manual",
    auto_startup = false
)]
async fn confirm_order(
    Payload(order): Payload<Order>,
    Key(key): Key<String>,
    template: KafkaTemplate,
    ack: Ack,
) -> Result<(), HandlerError> {
    let confirmation = Confirmation {
        order_id: order.id,
        status: "confirmed".to_owned(),
    };
    template
        .send("orders.confirmed", &key, &confirmation)
        .await?;
    ack.acknowledge();
    Ok(())
}

/// Running total of payments; a negative amount is refused.
#[derive(Default)]
struct Ledger(AtomicI64);

#[kafka_listener(
    id = "payments",
    topics = "payments",
    group = "payments-service",
    auto_startup = false
)]
async fn record_payment(
    Payload(payment): Payload<Order>,
    State(ledger): State<Arc<Ledger>>,
) -> Result<(), HandlerError> {
    if payment.amount < 0 {
        return Err(HandlerError::non_retryable(format!(
            "negative amount {} on {}",
            payment.amount, payment.id
        )));
    }
    ledger.0.fetch_add(payment.amount, Ordering::SeqCst);
    Ok(())
}

const CONFIG: &str = r#"
[kafka.listener.error-handler]
max-attempts = 3
recoverer = "dead-letter"
"#;

const WITHIN: Duration = Duration::from_secs(30);

// --- the test ----------------------------------------------------------------------------------

#[tokio::test]
async fn orders_are_confirmed_bad_payments_are_dead_lettered_and_failed_commits_lose_nothing() {
    let kafka = TestKafka::start();
    let ledger = Arc::new(Ledger::default());
    let app = kafka
        .application(CONFIG)
        .with_listeners(["orders", "payments"])
        .with_state(Arc::clone(&ledger))
        .start()
        .await
        .expect("the service starts");

    // An order in, a confirmation out, with the order's key.
    let order = Order {
        id: "o-1".into(),
        amount: 30,
    };
    kafka.record("orders").key("customer-7").json(&order).await;
    let confirmed = kafka.read("orders.confirmed", 1, WITHIN).await;
    assert_eq!(confirmed[0].key.as_deref(), Some(&b"customer-7"[..]));
    let confirmation: Confirmation =
        serde_json::from_slice(confirmed[0].value.as_deref().unwrap_or_default()).expect("JSON");
    assert_eq!(
        confirmation,
        Confirmation {
            order_id: "o-1".into(),
            status: "confirmed".into()
        }
    );

    // A good payment is booked; a malformed one and a refused one go to the dead-letter topic
    // with where they came from and why.
    kafka
        .record("payments")
        .partition(0)
        .json(&Order {
            id: "p-1".into(),
            amount: 5,
        })
        .await;
    let malformed = kafka
        .record("payments")
        .partition(0)
        .bytes("{not json")
        .await;
    let refused = kafka
        .record("payments")
        .partition(0)
        .json(&Order {
            id: "p-2".into(),
            amount: -1,
        })
        .await;
    let dead = kafka.dead_letters("payments.DLT", 2, WITHIN).await;
    assert_eq!(dead[0].original_topic.as_deref(), Some("payments"));
    assert_eq!(dead[0].original_offset, Some(malformed.offset));
    assert_eq!(dead[0].record.value.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(dead[1].original_offset, Some(refused.offset));
    let reason = dead[1].exception_message.as_deref().unwrap_or_default();
    assert!(reason.contains("negative amount -1 on p-2"), "{reason}");
    kafka
        .wait_committed("payments-service", "payments", WITHIN)
        .await;
    assert_eq!(ledger.0.load(Ordering::SeqCst), 5);

    // The broker times out the next 5 commits: they are sent again until they land, and every
    // order is confirmed.
    kafka
        .faults()
        .fail_next(Request::OffsetCommit, 5, BrokerError::RequestTimedOut);
    for n in 2..=20 {
        let order = Order {
            id: format!("o-{n}"),
            amount: n,
        };
        kafka
            .record("orders")
            .key(format!("customer-{n}"))
            .json(&order)
            .await;
    }
    kafka
        .wait_committed("orders-service", "orders", WITHIN)
        .await;
    assert_eq!(kafka.lag("orders-service", "orders").await, 0);
    let confirmed = kafka.read("orders.confirmed", 20, WITHIN).await;
    let mut ids: Vec<String> = confirmed
        .iter()
        .filter_map(|record| serde_json::from_slice::<Confirmation>(record.value.as_deref()?).ok())
        .map(|confirmation| confirmation.order_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "{ids:?}");

    assert!(app.shutdown().await.is_clean());
}

// --- lifecycle hooks around the running service ------------------------------------------------

#[tokio::test]
async fn the_started_hook_seeds_data_and_the_stopping_hook_still_sends() {
    let kafka = TestKafka::start();
    let ledger = Arc::new(Ledger::default());
    let app = kafka
        .application("")
        .with_listeners(["payments"])
        .with_state(Arc::clone(&ledger))
        .on_started(|app| {
            let template = app.template().clone();
            async move {
                let seed = Order {
                    id: "seed".into(),
                    amount: 100,
                };
                template.send("payments", "seed", &seed).await?;
                Ok(())
            }
        })
        .on_stopping(|app| {
            let template = app.template().clone();
            async move {
                template.send_value("service-events", &"stopping").await?;
                Ok(())
            }
        })
        .start()
        .await
        .expect("the service starts");
    kafka
        .wait_committed("payments-service", "payments", WITHIN)
        .await;
    assert_eq!(ledger.0.load(Ordering::SeqCst), 100);
    assert!(app.shutdown().await.is_clean());
    let events = kafka.read("service-events", 1, WITHIN).await;
    assert_eq!(events[0].value.as_deref(), Some(&br#""stopping""#[..]));
}

#[tokio::test]
async fn a_failing_started_hook_stops_the_service_and_is_its_error() {
    let kafka = TestKafka::start();
    let started = kafka
        .application("")
        .with_listeners(["payments"])
        .with_state(Arc::new(Ledger::default()))
        .on_started(|_| async { Err("the cache cannot be warmed".into()) })
        .start()
        .await;
    let Err(error) = started else {
        panic!("the service started although its hook failed");
    };
    assert_eq!(
        error.to_string(),
        "the after startup hook failed: the cache cannot be warmed"
    );
}

// --- the handlers alone, without a broker ------------------------------------------------------

#[tokio::test]
async fn the_order_handler_confirms_with_the_orders_key_and_correlation_id() {
    let mut handler = TestHandler::new("orders");
    let order = Order {
        id: "o-1".into(),
        amount: 30,
    };
    let record = TestRecord::json(&order)
        .key("customer-7")
        .header("correlation_id", "abc-123");
    let handled = handler.handle(record).await;
    assert!(
        matches!(handled.outcome, Outcome::Acknowledged),
        "{:?}",
        handled.outcome
    );
    let [sent] = &handled.sent[..] else {
        panic!("one confirmation, got {:?}", handled.sent);
    };
    assert_eq!(sent.topic, "orders.confirmed");
    assert_eq!(sent.key.as_deref(), Some(&b"customer-7"[..]));
    let confirmation: Confirmation =
        serde_json::from_slice(sent.value.as_deref().unwrap_or_default()).expect("JSON");
    assert_eq!(confirmation.order_id, "o-1");
    assert!(
        sent.headers
            .contains(&("correlation_id".to_owned(), b"abc-123".to_vec())),
        "the confirmation carries the order's correlation id: {:?}",
        sent.headers
    );
}

#[tokio::test]
async fn the_payment_handler_books_refuses_and_rejects() {
    let ledger = Arc::new(Ledger::default());
    let mut handler = TestHandler::new("payments").with_state(Arc::clone(&ledger));

    let good = handler
        .handle(TestRecord::json(&Order {
            id: "p-1".into(),
            amount: 5,
        }))
        .await;
    assert!(
        matches!(good.outcome, Outcome::Acknowledged),
        "{:?}",
        good.outcome
    );
    assert_eq!(ledger.0.load(Ordering::SeqCst), 5);

    let refused = handler
        .handle(TestRecord::json(&Order {
            id: "p-2".into(),
            amount: -1,
        }))
        .await;
    let Outcome::Failed(error) = refused.outcome else {
        panic!("a negative amount fails: {:?}", refused.outcome);
    };
    assert_eq!(error.message(), "negative amount -1 on p-2");
    assert!(!error.is_retryable());

    let malformed = handler.handle(TestRecord::bytes("{not json")).await;
    assert!(
        matches!(malformed.outcome, Outcome::Rejected(_)),
        "{:?}",
        malformed.outcome
    );
    assert_eq!(
        ledger.0.load(Ordering::SeqCst),
        5,
        "nothing else was booked"
    );
}

/// Nacks a busy job, keeps a deferred one's `Ack` for later, and drops the `Ack` of any other.
#[kafka_listener(
    id = "jobs",
    topics = "jobs",
    group = "jobs",
    ack_mode = "manual",
    auto_startup = false
)]
async fn run_job(
    headers: Headers,
    ack: Ack,
    State(deferred): State<Arc<std::sync::Mutex<Vec<Ack>>>>,
) {
    match headers.get_str("mode") {
        Some("busy") => ack.nack(Duration::from_secs(5)),
        Some("defer") => deferred.lock().expect("deferred").push(ack),
        _ => drop(ack),
    }
}

#[tokio::test]
async fn a_manual_handler_s_nack_deferral_and_dropped_ack_are_told_apart() {
    let deferred = Arc::new(std::sync::Mutex::new(Vec::<Ack>::new()));
    let mut handler = TestHandler::new("jobs").with_state(Arc::clone(&deferred));
    let busy = handler
        .handle(TestRecord::text("j").header("mode", "busy"))
        .await;
    assert!(
        matches!(busy.outcome, Outcome::Nacked(delay) if delay == Duration::from_secs(5)),
        "{:?}",
        busy.outcome
    );
    let later = handler
        .handle(TestRecord::text("j").header("mode", "defer"))
        .await;
    assert!(
        matches!(later.outcome, Outcome::Unsettled),
        "{:?}",
        later.outcome
    );
    assert_eq!(deferred.lock().expect("deferred").len(), 1);
    let dropped = handler.handle(TestRecord::text("j")).await;
    assert!(
        matches!(dropped.outcome, Outcome::Nacked(delay) if delay.is_zero()),
        "{:?}",
        dropped.outcome
    );
}
