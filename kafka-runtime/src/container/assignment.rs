//! Explicit partitions (Spring's `topicPartitions` with `PartitionOffset`): a listener that names
//! its partitions is assigned them, without the group's rebalancing, and starts each at its
//! initial offset (or, without one, at the group's committed offset).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// How long the broker may take to say which offset a time names.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions a listener names, and where it starts reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExplicitPartitions {
    /// Sorted, without duplicates.
    pub(crate) partitions: Vec<i32>,
    /// `None`: the group's committed offset (else `auto-offset-reset`).
    pub(crate) initial: Option<InitialOffset>,
}

/// Where a listener with explicit partitions starts reading each of them, every time it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InitialOffset {
    /// `earliest`: the first offset the partition still has.
    Earliest,
    /// `latest`: only records written from now on.
    Latest,
    /// `42`: this offset.
    Offset(i64),
    /// `-10`: this many records before the end (Spring's negative initial offset).
    FromEnd(i64),
    /// `timestamp:1764000000000`: the first record at or after this time (epoch milliseconds);
    /// the end when there is none.
    Timestamp(i64),
}

impl FromStr for InitialOffset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expected = || {
            format!(
                "`{text}` is not an initial offset; expected `earliest`, `latest`, an offset \
                 (`42`), an offset relative to the end (`-10`) or `timestamp:<epoch millis>`"
            )
        };
        match text.to_ascii_lowercase().as_str() {
            "earliest" | "beginning" => return Ok(InitialOffset::Earliest),
            "latest" | "end" => return Ok(InitialOffset::Latest),
            _ => {}
        }
        if let Some(millis) = text.strip_prefix("timestamp:") {
            return millis
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|millis| *millis >= 0)
                .map(InitialOffset::Timestamp)
                .ok_or_else(expected);
        }
        match text.parse::<i64>().map_err(|_| expected())? {
            back if back < 0 => Ok(InitialOffset::FromEnd(back.saturating_neg())),
            offset => Ok(InitialOffset::Offset(offset)),
        }
    }
}

impl ExplicitPartitions {
    /// Parses `partitions` (`"0, 2, 4-6"`: numbers and ranges), to start at `initial`.
    pub(crate) fn parse(partitions: &str, initial: Option<InitialOffset>) -> Result<Self, String> {
        let mut parsed = Vec::new();
        for part in partitions.split(',').map(str::trim) {
            let number = |text: &str| {
                text.trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        format!(
                        "`{partitions}` does not name partitions; expected numbers and ranges, \
                         e.g. \"0, 2, 4-6\""
                    )
                    })
            };
            match part.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        return Err(format!("the range `{part}` is empty"));
                    }
                    parsed.extend(first..=last);
                }
                None => parsed.push(number(part)?),
            }
        }
        parsed.sort_unstable();
        parsed.dedup();
        Ok(ExplicitPartitions {
            partitions: parsed,
            initial,
        })
    }

    /// The (topic, partition)s consumer `index` of `consumers` reads: every named partition of
    /// every topic, dealt out in turn (Spring's distribution across a container's consumers).
    pub(crate) fn share(
        &self,
        topics: &[String],
        index: usize,
        consumers: usize,
    ) -> Vec<(String, i32)> {
        self.all(topics)
            .into_iter()
            .enumerate()
            .filter(|(n, _)| n % consumers.max(1) == index)
            .map(|(_, entry)| entry)
            .collect()
    }

    /// How many (topic, partition)s there are to read.
    pub(crate) fn count(&self, topics: &[String]) -> usize {
        topics.len() * self.partitions.len()
    }

    fn all(&self, topics: &[String]) -> Vec<(String, i32)> {
        topics
            .iter()
            .flat_map(|topic| self.partitions.iter().map(move |p| (topic.clone(), *p)))
            .collect()
    }

    /// The assignment of `share`, each partition at its initial offset. A time is looked up on
    /// the broker (this blocks: call it on the consumer's thread); when the lookup fails, the
    /// partitions start at the committed offset, and the error is returned with them.
    pub(crate) fn positions<X: ConsumerContext, C: Consumer<X>>(
        &self,
        consumer: &C,
        share: &[(String, i32)],
    ) -> (TopicPartitionList, Option<rdkafka::error::KafkaError>) {
        let offset = match self.initial {
            None => Offset::Invalid,
            Some(InitialOffset::Earliest) => Offset::Beginning,
            Some(InitialOffset::Latest) => Offset::End,
            Some(InitialOffset::Offset(offset)) => Offset::Offset(offset),
            Some(InitialOffset::FromEnd(back)) => Offset::OffsetTail(back),
            Some(InitialOffset::Timestamp(millis)) => Offset::Offset(millis),
        };
        let list = |offset_of: &dyn Fn(&str, i32) -> Offset| -> KafkaResult<TopicPartitionList> {
            let mut list = TopicPartitionList::new();
            for (topic, partition) in share {
                list.add_partition_offset(topic, *partition, offset_of(topic, *partition))?;
            }
            Ok(list)
        };
        let looked_up = match self.initial {
            Some(InitialOffset::Timestamp(_)) => list(&|_, _| offset)
                .and_then(|wanted| consumer.offsets_for_times(wanted, LOOKUP_TIMEOUT))
                .and_then(|found| {
                    list(&|topic, partition| {
                        match found.find_partition(topic, partition).map(|e| e.offset()) {
                            Some(Offset::Offset(offset)) if offset >= 0 => Offset::Offset(offset),
                            // No record at or after that time.
                            _ => Offset::End,
                        }
                    })
                }),
            _ => list(&|_, _| offset),
        };
        match looked_up {
            Ok(positions) => (positions, None),
            Err(error) => (
                list(&|_, _| Offset::Invalid).unwrap_or_default(),
                Some(error),
            ),
        }
    }
}

impl fmt::Display for ExplicitPartitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let numbers: Vec<String> = self.partitions.iter().map(i32::to_string).collect();
        write!(f, "partitions [{}]", numbers.join(", "))?;
        match self.initial {
            None => write!(f, " from the committed offset"),
            Some(initial) => write!(f, " from {initial:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_numbers_and_ranges() {
        let parsed = ExplicitPartitions::parse(" 4-6, 0,2 , 5", Some(InitialOffset::FromEnd(10)))
            .expect("parses");
        assert_eq!(parsed.partitions, vec![0, 2, 4, 5, 6]);
        assert_eq!(parsed.initial, Some(InitialOffset::FromEnd(10)));
        for wrong in ["", "a", "1,,2", "3-1", "-1", "1-"] {
            assert!(ExplicitPartitions::parse(wrong, None).is_err(), "{wrong}");
        }
    }

    #[test]
    fn initial_offsets_take_spring_s_forms() {
        let parse = |text: &str| text.parse::<InitialOffset>();
        assert_eq!(parse("earliest"), Ok(InitialOffset::Earliest));
        assert_eq!(parse("Latest"), Ok(InitialOffset::Latest));
        assert_eq!(parse("42"), Ok(InitialOffset::Offset(42)));
        assert_eq!(parse("0"), Ok(InitialOffset::Offset(0)));
        assert_eq!(parse("-3"), Ok(InitialOffset::FromEnd(3)));
        assert_eq!(
            parse("timestamp:1764000000000"),
            Ok(InitialOffset::Timestamp(1_764_000_000_000))
        );
        for wrong in ["soon", "timestamp:-1", "timestamp:", "4.5"] {
            let error = parse(wrong).expect_err(wrong);
            assert!(error.contains("expected `earliest`"), "{error}");
        }
    }

    #[test]
    fn consumers_share_the_partitions_in_turn() {
        let parsed = ExplicitPartitions::parse("0-2", None).expect("parses");
        let topics = ["a".to_owned(), "b".to_owned()];
        assert_eq!(parsed.count(&topics), 6);
        assert_eq!(
            parsed.share(&topics, 0, 2),
            vec![
                ("a".to_owned(), 0),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1)
            ]
        );
        assert_eq!(
            parsed.share(&topics, 1, 2),
            vec![
                ("a".to_owned(), 1),
                ("b".to_owned(), 0),
                ("b".to_owned(), 2)
            ]
        );
        assert_eq!(parsed.share(&topics, 0, 1).len(), 6);
    }
}
