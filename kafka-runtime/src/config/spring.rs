//! Spring Boot's `spring.kafka.*` keys that this runtime does not implement, with what to use
//! instead: such a key is refused as a Spring key we do not support, not as a typo.

/// (key relative to the `kafka` tree, or a subtree's prefix ending in `.`; the alternative)
const UNSUPPORTED: &[(&str, &str)] = &[
    ("admin.", "topics are declared as [[kafka.topics]] and created at startup; admin client settings go in kafka.properties.*"),
    ("streams.", "Kafka Streams is not part of this runtime"),
    ("jaas.", "set SASL with kafka.properties.\"sasl.mechanism\", \"sasl.username\" and \"sasl.password\""),
    ("template.default-topic", "name the topic in each KafkaTemplate send"),
    ("ssl.bundle", "set kafka.ssl.* locations"),
    ("consumer.fetch-max-wait", "set kafka.consumer.properties.\"fetch.wait.max.ms\""),
    ("consumer.fetch-min-size", "set kafka.consumer.properties.\"fetch.min.bytes\""),
    ("consumer.heartbeat-interval", "set kafka.consumer.properties.\"heartbeat.interval.ms\""),
    ("consumer.auto-commit-interval", "commits follow kafka.listener.ack-mode and ack-time"),
    ("consumer.client-id", "set kafka.client-id"),
    ("consumer.bootstrap-servers", "set kafka.bootstrap-servers"),
    ("consumer.security.", "set kafka.security.*"),
    ("consumer.ssl.", "set kafka.ssl.*"),
    ("producer.buffer-memory", "set kafka.producer.properties.\"queue.buffering.max.kbytes\""),
    ("producer.client-id", "set kafka.client-id"),
    ("producer.bootstrap-servers", "set kafka.bootstrap-servers"),
    ("producer.security.", "set kafka.security.*"),
    ("producer.ssl.", "set kafka.ssl.*"),
    ("listener.idle-between-polls", "partitions are read as their records arrive"),
    ("listener.log-container-config", "the container logs its settings at startup"),
    ("listener.missing-topics-fatal", "listener topics are created at startup when missing"),
    ("listener.monitor-interval", "set management.stuck-timeout"),
    ("listener.no-poll-threshold", "set management.stuck-timeout"),
    ("listener.immediate-stop", "shutdown waits up to kafka.listener.shutdown-timeout"),
    ("listener.async-acks", "acknowledgments may be given from any task already"),
    ("listener.client-id", "set kafka.client-id"),
    ("listener.observation-enabled", "handler lines carry their record; set kafka.listener.record-span for a span"),
    ("listener.auto-startup", "set auto_startup in #[kafka_listener]"),
    ("retry.topic.random-back-off", "retry topics use fixed or exponential delays"),
];

/// What to use instead of the Spring Boot key `key` (a full key, `kafka.` or `spring.kafka.`
/// first), if this runtime does not implement it.
pub(super) fn unsupported(key: &str) -> Option<&'static str> {
    let relative = key
        .strip_prefix("spring.kafka.")
        .or_else(|| key.strip_prefix("kafka."))?;
    UNSUPPORTED.iter().find_map(|(spring, alternative)| {
        let matches = match spring.strip_suffix('.') {
            Some(tree) => relative == tree || relative.starts_with(spring),
            None => relative == *spring,
        };
        matches.then_some(*alternative)
    })
}
