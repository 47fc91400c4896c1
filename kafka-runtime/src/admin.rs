//! Creating topics the runtime needs (dead-letter topics) when they are missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{client, KafkaSettings};
use crate::embedded::EmbeddedKafka;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates each `(topic, partitions)` that does not exist yet; reports the ones that failed
/// (an existing topic is not a failure).
pub(crate) async fn create_missing(
    settings: &KafkaSettings,
    bootstrap: &str,
    embedded: Option<&EmbeddedKafka>,
    topics: &[(String, i32)],
) -> Vec<(String, String)> {
    if topics.is_empty() {
        return Vec::new();
    }
    if let Some(embedded) = embedded {
        // The mock cluster has no CreateTopics handler; it creates topics directly.
        return topics
            .iter()
            .filter_map(|(topic, partitions)| {
                embedded
                    .create_topic(topic, *partitions)
                    .err()
                    .map(|error| (topic.clone(), error.to_string()))
            })
            .collect();
    }
    let admin: AdminClient<DefaultClientContext> =
        match client::client_config(&settings.admin_properties(bootstrap)).create() {
            Ok(admin) => admin,
            Err(error) => {
                return topics
                    .iter()
                    .map(|(t, _)| (t.clone(), error.to_string()))
                    .collect()
            }
        };
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(topic, partitions)| NewTopic::new(topic, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    match admin.create_topics(&new_topics, &options).await {
        Ok(results) => results
            .into_iter()
            .filter_map(|result| match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((topic, code)) => Some((topic, code.to_string())),
            })
            .collect(),
        Err(error) => topics
            .iter()
            .map(|(t, _)| (t.clone(), error.to_string()))
            .collect(),
    }
}
