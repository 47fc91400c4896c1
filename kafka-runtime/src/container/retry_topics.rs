//! Non-blocking retries (Spring's `@RetryableTopic`): names of the retry and dead-letter topics,
//! due times, and the headers that carry them from one topic to the next.
//!
//! A record failing on `<topic>` is republished to `<topic>-retry-0` (due after `delay`), failing
//! there to `<topic>-retry-1` (due after `delay * multiplier`), ... and after the last attempt to
//! `<topic>-dlt`, always to the same partition number. The due time travels in the record, so it
//! survives restarts. Header names and encodings are spring-kafka's `RetryTopicHeaders`:
//! `retry_topic-attempts` a 4-byte big-endian int, `retry_topic-backoff-timestamp` and
//! `retry_topic-original-timestamp` epoch milliseconds as a minimal big-endian two's-complement
//! integer (Java's `BigInteger.toByteArray()`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::RetryTopicSettings;
use crate::record::{ConsumerRecord, RecordView};

pub(crate) const ATTEMPTS: &str = "retry_topic-attempts";
pub(crate) const BACKOFF_TIMESTAMP: &str = "retry_topic-backoff-timestamp";
pub(crate) const ORIGINAL_TIMESTAMP: &str = "retry_topic-original-timestamp";

/// Spring Boot's `spring.kafka.retry.topic.*` defaults.
const DEFAULT_ATTEMPTS: u32 = 3;
const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// A listener's resolved retry-topic policy.
#[derive(Debug, Clone)]
pub(crate) struct RetryTopics {
    attempts: u32,
    delay: Duration,
    multiplier: f64,
    max_delay: Option<Duration>,
}

/// Where a record sits in the chain of topics.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stage {
    /// The listener's own topic the chain started from.
    pub(crate) main: String,
    /// 0 on the main topic, `n + 1` on `<main>-retry-n`.
    pub(crate) index: u32,
}

impl RetryTopics {
    /// The policy, if `settings` enable retry topics.
    pub(crate) fn new(settings: &RetryTopicSettings) -> Option<Self> {
        settings.enabled.unwrap_or(false).then(|| RetryTopics {
            attempts: settings.attempts.unwrap_or(DEFAULT_ATTEMPTS),
            delay: settings.delay.unwrap_or(DEFAULT_DELAY),
            multiplier: settings.multiplier.unwrap_or(1.0),
            max_delay: settings.max_delay,
        })
    }

    /// The retry topics of `main`, in order.
    pub(crate) fn retry_topics(&self, main: &str) -> Vec<String> {
        (0..self.attempts - 1)
            .map(|n| format!("{main}-retry-{n}"))
            .collect()
    }

    /// The chain of `main`'s topics, as `--check` shows it.
    pub(crate) fn describe(&self, main: &str) -> String {
        let mut stage = Stage {
            main: main.to_owned(),
            index: 0,
        };
        let mut steps = Vec::new();
        while let Some((topic, delay)) = self.next(&stage) {
            steps.push(format!("{topic} after {delay:?}"));
            stage.index += 1;
        }
        steps.push(format!("then {}", Self::dead_letter_topic(main)));
        steps.join(", ")
    }

    /// The dead-letter topic of `main`.
    pub(crate) fn dead_letter_topic(main: &str) -> String {
        format!("{main}-dlt")
    }

    /// Where a record of `topic` is in the chain of one of `mains`.
    pub(crate) fn stage(&self, topic: &str, mains: &[String]) -> Option<Stage> {
        mains.iter().find_map(|main| {
            if topic == main {
                return Some(Stage {
                    main: main.clone(),
                    index: 0,
                });
            }
            let n: u32 = topic
                .strip_prefix(main)?
                .strip_prefix("-retry-")?
                .parse()
                .ok()?;
            (n + 1 < self.attempts).then(|| Stage {
                main: main.clone(),
                index: n + 1,
            })
        })
    }

    /// Where a record that failed at `stage` goes next: a retry topic with its delay, or `None`
    /// when the attempts are used up.
    pub(crate) fn next(&self, stage: &Stage) -> Option<(String, Duration)> {
        (stage.index + 1 < self.attempts).then(|| {
            let exponent = i32::try_from(stage.index).unwrap_or(i32::MAX);
            let secs = self.delay.as_secs_f64() * self.multiplier.powi(exponent);
            let delay = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
            let delay = self.max_delay.map_or(delay, |max| delay.min(max));
            (format!("{}-retry-{}", stage.main, stage.index), delay)
        })
    }
}

/// Milliseconds since the epoch, now.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RetryTopics {
    /// How long until `record`, read from one of the retry topics of `mains`, is due. The due
    /// time comes from the wire: a malformed one counts as absent, and one further ahead than the
    /// longest configured delay is clamped to it (a crafted header must not hold a partition for
    /// ever). Records of the main topics are always due.
    pub(crate) fn wait_until_due(
        &self,
        record: &RecordView<'_>,
        mains: &[String],
    ) -> Option<Duration> {
        if self.stage(record.topic, mains)?.index == 0 {
            return None;
        }
        let header = record.last_header(BACKOFF_TIMESTAMP)?;
        let Some(due) = decode_big_integer(header) else {
            tracing::warn!(
                record = %record.coordinates(), header = BACKOFF_TIMESTAMP, bytes = header.len(),
                "malformed due time; the record is handled now"
            );
            return None;
        };
        let wait = u64::try_from(due.saturating_sub(now_millis())).ok()?;
        let longest = self.longest_delay();
        let wait = Duration::from_millis(wait);
        if wait > longest {
            tracing::warn!(
                record = %record.coordinates(), ?wait, max = ?longest,
                "due time further ahead than the longest retry delay; waiting the longest delay"
            );
        }
        Some(wait.min(longest)).filter(|wait| !wait.is_zero())
    }

    /// The longest wait between two retries.
    fn longest_delay(&self) -> Duration {
        (0..self.attempts)
            .filter_map(|index| {
                let stage = Stage {
                    main: String::new(),
                    index,
                };
                self.next(&stage).map(|(_, delay)| delay)
            })
            .max()
            .unwrap_or(self.delay)
    }
}

/// The headers of `record` republished to a retry topic, due in `delay`.
pub(crate) fn retry_headers(
    record: &ConsumerRecord,
    attempt: u32,
    delay: Duration,
) -> Vec<(String, Vec<u8>)> {
    let original = RecordView::of_record(record)
        .last_header(ORIGINAL_TIMESTAMP)
        .and_then(decode_big_integer)
        .or(record.timestamp)
        .unwrap_or_else(now_millis);
    let due = now_millis().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|h| ![ATTEMPTS, BACKOFF_TIMESTAMP, ORIGINAL_TIMESTAMP].contains(&h.key.as_str()))
        .map(|h| (h.key.clone(), h.value.clone().unwrap_or_default()))
        .collect();
    let attempts = i32::try_from(attempt + 1).unwrap_or(i32::MAX);
    headers.push((ATTEMPTS.to_owned(), attempts.to_be_bytes().to_vec()));
    headers.push((BACKOFF_TIMESTAMP.to_owned(), encode_big_integer(due)));
    headers.push((ORIGINAL_TIMESTAMP.to_owned(), encode_big_integer(original)));
    headers
}

/// Java's `BigInteger.valueOf(n).toByteArray()`: big-endian, no redundant sign bytes.
fn encode_big_integer(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (byte, next) = (bytes[start], bytes[start + 1]);
        let redundant = (byte == 0x00 && next & 0x80 == 0) || (byte == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

fn decode_big_integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
    let mut full = [fill; 8];
    full[8 - bytes.len()..].copy_from_slice(bytes);
    Some(i64::from_be_bytes(full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_match_javas_encoding() {
        // The due time seen in a real Spring retry record: hex 01A012AB41BF.
        assert_eq!(
            encode_big_integer(0x01A0_12AB_41BF),
            vec![0x01, 0xA0, 0x12, 0xAB, 0x41, 0xBF]
        );
        assert_eq!(encode_big_integer(128), vec![0x00, 0x80]);
        assert_eq!(encode_big_integer(-1), vec![0xff]);
        for n in [0, 1, 127, 128, 1_786_864_805_192, -129, i64::MAX, i64::MIN] {
            assert_eq!(decode_big_integer(&encode_big_integer(n)), Some(n), "{n}");
        }
    }

    fn retry_record(topic: &str, due: &[u8]) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.into(),
            partition: 0,
            offset: 7,
            timestamp: None,
            timestamp_type: crate::record::TimestampType::NotAvailable,
            key: None,
            value: None,
            headers: vec![crate::record::Header {
                key: BACKOFF_TIMESTAMP.to_owned(),
                value: Some(due.to_vec()),
            }],
        }
    }

    #[test]
    fn due_times_from_the_wire_are_clamped_and_main_topic_records_are_always_due() {
        let settings = RetryTopicSettings {
            enabled: Some(true),
            attempts: Some(3),
            delay: Some(Duration::from_millis(100)),
            multiplier: Some(2.0),
            max_delay: None,
        };
        let policy = RetryTopics::new(&settings).expect("enabled");
        let mains = vec!["orders".to_owned()];
        let due_in = |topic: &str, due: &[u8]| {
            policy.wait_until_due(&RecordView::of_record(&retry_record(topic, due)), &mains)
        };
        let overflow = [0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            due_in("orders-retry-0", &overflow),
            None,
            "i64::MIN is long past"
        );
        let far = encode_big_integer(now_millis() + 86_400_000);
        assert_eq!(
            due_in("orders-retry-1", &far),
            Some(Duration::from_millis(200)),
            "a day ahead waits the longest delay"
        );
        assert_eq!(
            due_in("orders", &far),
            None,
            "main-topic records are not held"
        );
        assert_eq!(due_in("orders-retry-0", &[1; 9]), None, "malformed: absent");
    }

    #[test]
    fn topics_and_delays_follow_springs_naming() {
        let settings = RetryTopicSettings {
            enabled: Some(true),
            attempts: Some(4),
            delay: Some(Duration::from_millis(100)),
            multiplier: Some(2.0),
            max_delay: Some(Duration::from_millis(300)),
        };
        let policy = RetryTopics::new(&settings).expect("enabled");
        let mains = vec!["orders".to_owned()];
        assert_eq!(
            policy.retry_topics("orders"),
            vec!["orders-retry-0", "orders-retry-1", "orders-retry-2"]
        );
        let stage = policy.stage("orders", &mains).expect("main");
        assert_eq!(
            policy.next(&stage),
            Some(("orders-retry-0".to_owned(), Duration::from_millis(100)))
        );
        let stage = policy.stage("orders-retry-1", &mains).expect("retry");
        assert_eq!(stage.index, 2);
        assert_eq!(
            policy.next(&stage),
            Some(("orders-retry-2".to_owned(), Duration::from_millis(300)))
        );
        assert_eq!(
            policy.next(&policy.stage("orders-retry-2", &mains).expect("last")),
            None
        );
        assert_eq!(policy.stage("orders-retry-9", &mains), None);
        assert_eq!(RetryTopics::dead_letter_topic("orders"), "orders-dlt");
        assert!(
            RetryTopics::new(&RetryTopicSettings::default()).is_none(),
            "off by default"
        );
    }
}
