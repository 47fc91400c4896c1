//! Topics the application needs: declared ones (`[[kafka.topics]]`) and derived ones (dead-letter
//! and retry topics), created through the admin API when missing, or on the mock cluster.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{client, KafkaSettings, TopicDeclaration};
use crate::embedded::EmbeddedKafka;
use crate::error::Error;
use crate::template::KafkaTemplate;
use rdkafka::error::KafkaError;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the topics found missing while the application runs: the dead-letter topics of a
/// pattern listener's topics, known only once their records arrive. `None` in an application
/// on the embedded cluster, which creates a topic on first use.
#[derive(Clone)]
pub(crate) struct TopicAdmin {
    settings: std::sync::Arc<KafkaSettings>,
    bootstrap: String,
}

impl TopicAdmin {
    pub(crate) fn new(settings: &KafkaSettings, bootstrap: &str) -> Self {
        TopicAdmin {
            settings: std::sync::Arc::new(settings.clone()),
            bootstrap: bootstrap.to_owned(),
        }
    }

    /// Creates `topic` with `partitions` partitions unless it exists; the broker's refusal if
    /// it refused.
    pub(crate) async fn create(&self, topic: &str, partitions: i32) -> Result<(), String> {
        let wanted = [TopicSpec::plain(topic.to_owned(), partitions)];
        match create_missing(&self.settings, &self.bootstrap, None, &wanted)
            .await
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some((_, error)) => Err(error),
        }
    }
}

/// A topic to create when missing.
pub(crate) struct TopicSpec {
    pub(crate) name: String,
    pub(crate) partitions: i32,
    pub(crate) replication_factor: i32,
    pub(crate) config: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with one replica and the broker's default configuration.
    pub(crate) fn plain(name: String, partitions: i32) -> Self {
        TopicSpec {
            name,
            partitions,
            replication_factor: 1,
            config: Vec::new(),
        }
    }
}

impl From<&TopicDeclaration> for TopicSpec {
    fn from(declared: &TopicDeclaration) -> Self {
        TopicSpec {
            name: declared.name.clone(),
            partitions: declared.partitions,
            replication_factor: declared.replication_factor,
            config: declared
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        }
    }
}

/// Creates each topic that does not exist yet; returns the ones that failed with why (an existing
/// topic is not a failure).
pub(crate) async fn create_missing(
    settings: &KafkaSettings,
    bootstrap: &str,
    embedded: Option<&EmbeddedKafka>,
    topics: &[TopicSpec],
) -> Vec<(String, String)> {
    if topics.is_empty() {
        return Vec::new();
    }
    if let Some(embedded) = embedded {
        // The mock cluster has no CreateTopics handler; it creates topics directly (without config).
        return topics
            .iter()
            .filter_map(
                |topic| match embedded.create_topic(&topic.name, topic.partitions) {
                    Ok(())
                    | Err(Error::Kafka {
                        source: KafkaError::MockCluster(RDKafkaErrorCode::TopicAlreadyExists),
                        ..
                    }) => None,
                    Err(error) => Some((topic.name.clone(), error.to_string())),
                },
            )
            .collect();
    }
    let admin = match admin(settings, bootstrap) {
        Ok(admin) => admin,
        Err(error) => {
            return topics
                .iter()
                .map(|t| (t.name.clone(), error.clone()))
                .collect()
        }
    };
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            topic.config.iter().fold(
                NewTopic::new(
                    &topic.name,
                    topic.partitions,
                    TopicReplication::Fixed(topic.replication_factor),
                ),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    match admin.create_topics(&new_topics, &options()).await {
        Ok(results) => results
            .into_iter()
            .filter_map(|result| match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((topic, code)) => Some((topic, code.to_string())),
            })
            .collect(),
        Err(error) => topics
            .iter()
            .map(|t| (t.name.clone(), error.to_string()))
            .collect(),
    }
}

/// Creates the declared topics; an existing one with fewer partitions than declared is grown if
/// its declaration says so, and reported otherwise.
pub(crate) async fn declare(
    settings: &KafkaSettings,
    bootstrap: &str,
    embedded: Option<&EmbeddedKafka>,
    template: &KafkaTemplate,
) {
    let mut missing = Vec::new();
    let mut grow = Vec::new();
    for declared in &settings.topics {
        if embedded.is_some() {
            // Asking the mock cluster about a missing topic creates it with its own defaults.
            missing.push(TopicSpec::from(declared));
            continue;
        }
        match template.partition_count(&declared.name).await {
            None => missing.push(TopicSpec::from(declared)),
            Some(existing) if existing < declared.partitions && declared.grow_partitions => {
                grow.push((declared.name.clone(), declared.partitions, existing));
            }
            Some(existing) if existing < declared.partitions => tracing::warn!(
                topic = %declared.name, existing, declared = declared.partitions,
                "topic has fewer partitions than declared; set grow-partitions = true to grow it"
            ),
            Some(_) => {}
        }
    }
    for (topic, error) in create_missing(settings, bootstrap, embedded, &missing).await {
        tracing::error!(%topic, %error, "cannot create the declared topic");
    }
    for (topic, error) in grow_partitions(settings, bootstrap, &grow).await {
        tracing::error!(%topic, %error, "cannot grow the declared topic's partitions");
    }
    for spec in &missing {
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "declared topic created");
    }
}

async fn grow_partitions(
    settings: &KafkaSettings,
    bootstrap: &str,
    topics: &[(String, i32, i32)],
) -> Vec<(String, String)> {
    if topics.is_empty() {
        return Vec::new();
    }
    let admin = match admin(settings, bootstrap) {
        Ok(admin) => admin,
        Err(error) => {
            return topics
                .iter()
                .map(|(t, _, _)| (t.clone(), error.clone()))
                .collect()
        }
    };
    let requests: Vec<NewPartitions<'_>> = topics
        .iter()
        .map(|(topic, wanted, _)| NewPartitions::new(topic, usize::try_from(*wanted).unwrap_or(1)))
        .collect();
    match admin.create_partitions(&requests, &options()).await {
        Ok(results) => results
            .into_iter()
            .filter_map(|result| result.err().map(|(topic, code)| (topic, code.to_string())))
            .collect(),
        Err(error) => topics
            .iter()
            .map(|(t, _, _)| (t.clone(), error.to_string()))
            .collect(),
    }
}

fn admin(
    settings: &KafkaSettings,
    bootstrap: &str,
) -> Result<AdminClient<DefaultClientContext>, String> {
    client::client_config(&settings.admin_properties(bootstrap))
        .create()
        .map_err(|error| error.to_string())
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT))
}
