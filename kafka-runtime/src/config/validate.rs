//! What deserialization cannot tell: values of the right type that are impossible (a
//! concurrency of 0, a multiplier below 1, auto-commit on). Each settings type checks its own
//! keys; a problem names its key relative to the `kafka` tree.

use super::security::{self, Problem};
use super::{
    ConsumerSettings, ErrorHandlerSettings, KafkaSettings, ListenerOverrides, ListenerSettings,
    RetryTopicSettings, TopicDeclaration,
};

fn problem(key: String, message: impl Into<String>) -> Problem {
    Problem {
        key,
        message: message.into(),
    }
}

/// Back-off and delay multipliers grow or stay: at least 1.0.
fn multiplier(key: String, value: Option<f64>) -> Result<(), Problem> {
    match value.filter(|m| !(m.is_finite() && *m >= 1.0)) {
        Some(found) => Err(problem(
            key,
            format!("expected a number of at least 1.0, found {found}"),
        )),
        None => Ok(()),
    }
}

fn at_least_one(key: &str, value: u32) -> Result<(), Problem> {
    if value == 0 {
        return Err(problem(
            key.to_owned(),
            "expected a number of at least 1, found 0",
        ));
    }
    Ok(())
}

impl KafkaSettings {
    /// Every impossible value of the tree, the first one found.
    pub(super) fn validate(&self) -> Result<(), Problem> {
        security::validate(self.security.protocol, &self.ssl, &self.properties)?;
        self.consumer.validate(&self.listener)?;
        let auto_commit = self
            .consumer
            .properties
            .get("enable.auto.commit")
            .or_else(|| self.properties.get("enable.auto.commit"));
        if auto_commit.is_some_and(|value| value.to_string() == "true") {
            return Err(problem(
                "consumer.properties.enable.auto.commit".to_owned(),
                "`true` is impossible: the container commits offsets according to listener.ack-mode",
            ));
        }
        self.listener.validate()?;
        self.retry.topic.validate("retry.topic")?;
        for (id, own) in &self.listeners {
            own.validate(&format!("listeners.\"{id}\""))?;
        }
        for (index, topic) in self.topics.iter().enumerate() {
            topic.validate(&format!("topics[{index}]"))?;
        }
        Ok(())
    }
}

impl ConsumerSettings {
    fn validate(&self, listener: &ListenerSettings) -> Result<(), Problem> {
        if self.enable_auto_commit == Some(true) {
            return Err(problem(
                "consumer.enable-auto-commit".to_owned(),
                format!(
                    "`true` is impossible with ack-mode `{}`: the container commits offsets \
                     itself; remove the key or set it to false",
                    listener.ack_mode
                ),
            ));
        }
        at_least_one("consumer.max-poll-records", self.max_poll_records)
    }
}

impl ListenerSettings {
    fn validate(&self) -> Result<(), Problem> {
        at_least_one("listener.concurrency", self.concurrency)?;
        at_least_one("listener.ack-count", self.ack_count)?;
        at_least_one("listener.max-in-flight", self.max_in_flight)?;
        for (key, duration) in [
            ("listener.ack-time", self.ack_time),
            ("listener.poll-timeout", self.poll_timeout),
        ] {
            if duration.is_zero() {
                return Err(problem(key.to_owned(), "expected a duration above zero"));
            }
        }
        self.error_handler.validate("listener.error-handler")
    }
}

impl ListenerOverrides {
    fn validate(&self, path: &str) -> Result<(), Problem> {
        if self.concurrency == Some(0) {
            at_least_one(&format!("{path}.concurrency"), 0)?;
        }
        self.error_handler
            .validate(&format!("{path}.error-handler"))?;
        self.retry_topic.validate(&format!("{path}.retry-topic"))
    }
}

impl ErrorHandlerSettings {
    fn validate(&self, path: &str) -> Result<(), Problem> {
        if self.max_attempts == Some(0) {
            return Err(problem(
                format!("{path}.max-attempts"),
                "expected a number of deliveries of at least 1, found 0",
            ));
        }
        multiplier(format!("{path}.multiplier"), self.multiplier)?;
        if let Some(topic) = self
            .dead_letter_topic
            .as_ref()
            .filter(|t| t.trim().is_empty())
        {
            return Err(problem(
                format!("{path}.dead-letter-topic"),
                format!(
                    "expected a topic name (`{{topic}}` stands for the record's topic), found `{topic}`"
                ),
            ));
        }
        Ok(())
    }
}

impl RetryTopicSettings {
    fn validate(&self, path: &str) -> Result<(), Problem> {
        if self.attempts.is_some_and(|attempts| attempts < 2) {
            return Err(problem(
                format!("{path}.attempts"),
                "expected at least 2 deliveries (the first and one retry)",
            ));
        }
        multiplier(format!("{path}.multiplier"), self.multiplier)
    }
}

impl TopicDeclaration {
    fn validate(&self, path: &str) -> Result<(), Problem> {
        if self.name.trim().is_empty() {
            return Err(problem(format!("{path}.name"), "expected a topic name"));
        }
        if self.partitions < 1 {
            return Err(problem(
                format!("{path}.partitions"),
                format!("expected at least 1 partition, found {}", self.partitions),
            ));
        }
        if self.replication_factor < 1 {
            return Err(problem(
                format!("{path}.replication-factor"),
                format!(
                    "expected at least 1 replica, found {}",
                    self.replication_factor
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn each_impossible_value_is_named_with_its_key() {
        let cases = [
            (
                "[kafka.listener]\nconcurrency = 0",
                "kafka.listener.concurrency",
                "at least 1",
            ),
            (
                "[kafka.consumer]\nmax-poll-records = 0",
                "kafka.consumer.max-poll-records",
                "at least 1",
            ),
            (
                "[kafka.listener]\nack-time = \"0s\"",
                "kafka.listener.ack-time",
                "above zero",
            ),
            (
                "[kafka.listener.error-handler]\nmultiplier = 0.5",
                "kafka.listener.error-handler.multiplier",
                "at least 1.0",
            ),
            (
                "[kafka.listener.error-handler]\nmax-attempts = 0",
                "kafka.listener.error-handler.max-attempts",
                "at least 1",
            ),
            (
                "[kafka.listener.error-handler]\ndead-letter-topic = \" \"",
                "kafka.listener.error-handler.dead-letter-topic",
                "a topic name",
            ),
            (
                "[kafka.retry.topic]\nattempts = 1",
                "kafka.retry.topic.attempts",
                "at least 2",
            ),
            (
                "[kafka.retry.topic]\nmultiplier = 0.9",
                "kafka.retry.topic.multiplier",
                "at least 1.0",
            ),
            (
                "[kafka.listeners.orders.retry-topic]\nmultiplier = 0.9",
                "kafka.listeners.\"orders\".retry-topic.multiplier",
                "at least 1.0",
            ),
            (
                "[kafka.listeners.orders]\nconcurrency = 0",
                "kafka.listeners.\"orders\".concurrency",
                "at least 1",
            ),
            (
                "[[kafka.topics]]\nname = \"t\"\npartitions = 0",
                "kafka.topics[0].partitions",
                "at least 1 partition",
            ),
            (
                "[kafka.consumer.properties]\n\"enable.auto.commit\" = true",
                "kafka.consumer.properties.enable.auto.commit",
                "impossible",
            ),
        ];
        for (toml, key, message) in cases {
            let error = Config::from_toml_str(toml, "test.toml")
                .expect_err(toml)
                .to_string();
            assert!(
                error.contains(&format!("key `{key}`")) && error.contains(message),
                "{toml}: {error}"
            );
        }
    }
}
