//! How Spring's keys become librdkafka properties.
//!
//! | Spring key                   | librdkafka property          |
//! |------------------------------|------------------------------|
//! | `bootstrap-servers`          | `bootstrap.servers`          |
//! | `client-id`                  | `client.id`                  |
//! | `producer.acks`              | `acks`                       |
//! | `producer.retries`           | `retries`                    |
//! | `producer.batch-size`        | `batch.size`                 |
//! | `producer.compression-type`  | `compression.type`           |
//! | `producer.linger-ms`         | `linger.ms`                  |
//! | `consumer.group-id`          | `group.id`                   |
//! | `consumer.auto-offset-reset` | `auto.offset.reset` (default `earliest`; `none` is librdkafka's `error`) |
//! | (always)                     | `enable.auto.commit=false`, `enable.auto.offset.store=false` |
//! | `properties.*`, `producer.properties.*`, `consumer.properties.*` | passed unchanged |
//! | `security.*`, `ssl.*`, `properties.sasl.jaas.config` | see [`security`](super::security) |

use rdkafka::ClientConfig;

use super::KafkaSettings;

use super::values::Properties;

impl KafkaSettings {
    fn common_properties(&self, bootstrap: &str) -> Properties {
        let mut props =
            super::security::properties(self.security.protocol, &self.ssl, &self.properties);
        props.insert("bootstrap.servers".into(), bootstrap.to_owned());
        if let Some(client_id) = &self.client_id {
            props.insert("client.id".into(), client_id.clone());
        }
        props
    }

    /// The properties of one consumer of a listener container.
    pub fn consumer_properties(
        &self,
        bootstrap: &str,
        group_id: &str,
        client_suffix: &str,
    ) -> Properties {
        let mut props = self.common_properties(bootstrap);
        if let Some(client_id) = &self.client_id {
            props.insert("client.id".into(), format!("{client_id}-{client_suffix}"));
        }
        props.insert("group.id".into(), group_id.to_owned());
        props.insert("enable.auto.commit".into(), "false".into());
        props.insert("enable.auto.offset.store".into(), "false".into());
        props.insert(
            "auto.offset.reset".into(),
            self.consumer.auto_offset_reset.librdkafka_value().into(),
        );
        if let Some(isolation) = self.consumer.isolation_level {
            props.insert(
                "isolation.level".into(),
                isolation.librdkafka_value().into(),
            );
        }
        pass_through(
            &mut props,
            self.properties.iter().chain(&self.consumer.properties),
        );
        props
    }

    /// The properties of an admin client (topic creation).
    pub fn admin_properties(&self, bootstrap: &str) -> Properties {
        let mut props = self.common_properties(bootstrap);
        pass_through(&mut props, &self.properties);
        props
    }

    /// The properties of the template's producer.
    pub fn producer_properties(&self, bootstrap: &str) -> Properties {
        let mut props = self.common_properties(bootstrap);
        // The Java client's partitioner (and aiokafka's): a key lands on the same partition
        // whichever of them sent it, so per-key order holds in a fleet where both produce.
        // librdkafka's default (`consistent_random`, CRC32) agrees on about 1 key in 6.
        props.insert("partitioner".into(), "murmur2_random".into());
        let producer = &self.producer;
        if let Some(acks) = producer.acks {
            props.insert("acks".into(), acks.librdkafka_value().into());
        }
        if let Some(retries) = producer.retries {
            props.insert("retries".into(), retries.to_string());
        }
        if let Some(batch_size) = producer.batch_size {
            props.insert("batch.size".into(), batch_size.to_string());
        }
        if let Some(compression) = producer.compression_type {
            props.insert(
                "compression.type".into(),
                compression.librdkafka_value().into(),
            );
        }
        if let Some(linger) = producer.linger_ms {
            props.insert("linger.ms".into(), linger.to_string());
        }
        pass_through(
            &mut props,
            self.properties.iter().chain(&producer.properties),
        );
        props
    }
}

/// Copies `properties.*` unchanged, except the JAAS line, which became `sasl.username` and
/// `sasl.password` (librdkafka has no such property).
fn pass_through<'a>(
    props: &mut Properties,
    properties: impl IntoIterator<Item = (&'a String, &'a super::values::PropertyValue)>,
) {
    for (key, value) in properties {
        if key != super::security::JAAS_CONFIG {
            props.insert(key.clone(), value.to_string());
        }
    }
}

/// Builds an rdkafka `ClientConfig` from properties.
pub(crate) fn client_config(props: &Properties) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in props {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const SEED: &str = r#"
[spring.kafka]
bootstrap-servers = "localhost:9092"
client-id = "my-app"

[spring.kafka.producer]
acks = "all"
retries = 3
batch-size = 16384
compression-type = "gzip"
linger-ms = 5
key-serializer = "org.apache.kafka.common.serialization.StringSerializer"
value-serializer = "org.springframework.kafka.support.serializer.JsonSerializer"
properties = { "enable.idempotence" = true }

[spring.kafka.consumer]
group-id = "my-consumer-group"
auto-offset-reset = "earliest"
enable-auto-commit = false
key-deserializer = "org.apache.kafka.common.serialization.StringDeserializer"
value-deserializer = "org.springframework.kafka.support.serializer.JsonDeserializer"
properties = { "fetch.min.bytes" = 1 }

[spring.kafka.listener]
ack-mode = "manual"
concurrency = 3
"#;

    fn pairs(props: &super::Properties) -> Vec<(&str, &str)> {
        props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn seed_consumer_keys_map_to_librdkafka() {
        let config = Config::from_toml_str(SEED, "seed.toml").expect("seed config is valid");
        let props = config
            .kafka
            .consumer_properties("localhost:9092", "my-consumer-group", "0");
        assert_eq!(
            pairs(&props),
            vec![
                ("auto.offset.reset", "earliest"),
                ("bootstrap.servers", "localhost:9092"),
                ("client.id", "my-app-0"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("fetch.min.bytes", "1"),
                ("group.id", "my-consumer-group"),
            ]
        );
    }

    #[test]
    fn seed_producer_keys_map_to_librdkafka() {
        let config = Config::from_toml_str(SEED, "seed.toml").expect("seed config is valid");
        let props = config.kafka.producer_properties("localhost:9092");
        assert_eq!(
            pairs(&props),
            vec![
                ("acks", "all"),
                ("batch.size", "16384"),
                ("bootstrap.servers", "localhost:9092"),
                ("client.id", "my-app"),
                ("compression.type", "gzip"),
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
                ("partitioner", "murmur2_random"),
                ("retries", "3"),
            ]
        );
    }
}
