//! A test kit for applications built on this crate: feature `test-util` (tokio's naming).
//!
//! ```toml
//! [dev-dependencies]
//! kafka-runtime = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! [`TestKafka`] is a fresh in-process Kafka cluster per test (librdkafka's mock cluster, which
//! speaks the Kafka protocol on a loopback port) with what a test does around the application
//! under test, without a Kafka client of its own:
//!
//! - start the application on it in one expression: [`TestKafka::application`] with a TOML
//!   string (or [`TestKafka::application_with`] and any [`Config`](crate::Config)), then the
//!   usual [`KafkaApplication`](crate::KafkaApplication) builder;
//! - produce: [`TestKafka::record`] (JSON, text, bytes or a tombstone, with key, headers and
//!   partition);
//! - observe: [`TestKafka::read`] (Spring's `KafkaTestUtils.getRecords`),
//!   [`TestKafka::dead_letters`] (Spring's `kafka_dlt-*` headers decoded into [`DeadLetter`]),
//!   [`TestKafka::wait_committed`], [`TestKafka::committed`], [`TestKafka::lag`];
//! - break the broker: [`TestKafka::faults`] fails the next requests of a kind with a given
//!   error, takes the broker down and up, or slows it down.
//!
//! And without a broker, [`TestHandler`] runs one listener's handler on a [`TestRecord`] built
//! in the test and gives what came of it ([`Outcome`]: acknowledged, nacked, failed, rejected)
//! and what it sent through its template (karafka-testing's way).
//!
//! Helpers panic with a message that says what was expected and what was found, so a test reads
//! as a sequence of steps.
//!
//! ```
//! use std::time::Duration;
//! use kafka_runtime::prelude::*;
//! use kafka_runtime::test::TestKafka;
//!
//! #[kafka_listener(id = "shout", topics = "words", group = "shouter", auto_startup = false)]
//! async fn shout(Payload(word): Payload<String>, template: KafkaTemplate) -> Result<(), HandlerError> {
//!     template.send_value("words.loud", &word.to_uppercase()).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let kafka = TestKafka::start();
//! let app = kafka
//!     .application("[kafka.producer]\nvalue-serializer = \"string\"")
//!     .with_listeners(["shout"])
//!     .start()
//!     .await
//!     .expect("the application starts");
//! kafka.record("words").text("hello").await;
//! let loud = kafka.read("words.loud", 1, Duration::from_secs(20)).await;
//! assert_eq!(loud[0].value.as_deref(), Some(&b"HELLO"[..]));
//! kafka.wait_committed("shouter", "words", Duration::from_secs(20)).await;
//! app.shutdown().await;
//! # }
//! ```

mod faults;
mod handler;
mod kafka;
mod produce;
mod read;

pub use crate::dead_letter::DeadLetter;
pub use crate::template::SentRecord;
pub use faults::{BrokerError, Faults, Request};
pub use handler::{Handled, Outcome, TestHandler, TestRecord};
pub use kafka::TestKafka;
pub use produce::Produce;
