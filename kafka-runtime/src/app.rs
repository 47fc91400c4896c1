//! The application: configuration, registered listeners, their containers, the template.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, KafkaSettings, ListenerType, Ordering, PropertyValue};
use crate::container::{
    DeadLetterPublisher, ErrorPolicy, ExplicitPartitions, ListenerSpec, RetryTopics,
};
use crate::context::{AppContext, States};
use crate::control::{Launcher, ListenerHandle, Listeners};
use crate::embedded::EmbeddedKafka;
use crate::error::Error;
use crate::events::ListenerEvents;
use crate::intercept::RecordInterceptor;
use crate::lifecycle::{HookResult, Hooks, Stopping};
use crate::listener::{Invoker, ListenerDeclaration, ListenerRegistration};
use crate::management::health::Health;
use crate::management::Management;
use crate::placeholder;
use crate::template::KafkaTemplate;

/// Partitions of each listener topic created on the embedded cluster (at least the listener's
/// concurrency), so that `concurrency = 3` has work for every consumer.
const EMBEDDED_PARTITIONS: u32 = 6;
/// How long startup waits for a configured cluster to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka consumer service: every `#[kafka_listener]` in the binary, run per configuration.
///
/// ```no_run
/// # async fn demo() -> Result<(), kafka_runtime::Error> {
/// // application.toml (optional) + environment, listeners, Ctrl-C / SIGTERM to stop.
/// kafka_runtime::KafkaApplication::from_default_config()?.run().await
/// # }
/// ```
pub struct KafkaApplication {
    config: Config,
    embedded: Option<EmbeddedKafka>,
    states: States,
    only: Option<Vec<String>>,
    properties: BTreeMap<String, String>,
    hooks: Hooks,
}

impl KafkaApplication {
    /// An application with this configuration.
    pub fn new(config: Config) -> Self {
        KafkaApplication {
            config,
            embedded: None,
            states: States::default(),
            only: None,
            properties: BTreeMap::new(),
            hooks: Hooks::default(),
        }
    }

    /// Loads `application.toml` from the working directory if it exists, plus environment overrides.
    pub fn from_default_config() -> Result<Self, Error> {
        Ok(Self::new(Config::load_or_default("application.toml")?))
    }

    /// Loads the given TOML file (which must exist), plus environment overrides.
    pub fn from_config_file(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        Ok(Self::new(Config::load(path)?))
    }

    /// Runs against this embedded cluster (shared with the caller, e.g. a test that produces to
    /// it) instead of `bootstrap-servers`.
    pub fn with_embedded(mut self, embedded: EmbeddedKafka) -> Self {
        self.embedded = Some(embedded);
        self
    }

    /// Registers a value that handlers receive through `State<T>`.
    pub fn with_state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Adds an interceptor around every record handler call of the application's listeners
    /// (Spring's `RecordInterceptor`): its `before` runs after those added earlier, its `after`
    /// before theirs.
    pub fn with_interceptor(mut self, interceptor: impl RecordInterceptor) -> Self {
        self.states.intercept(interceptor);
        self
    }

    /// Adds callbacks for the listeners' consumers' events: partitions assigned and revoked,
    /// and idle consumers (with `listener.idle-event-interval`).
    pub fn with_events(mut self, events: impl ListenerEvents) -> Self {
        self.states.listen(events);
        self
    }

    /// Sets where listeners with `dedupe` keep the ids of the records they processed (the
    /// idempotent receiver; see [`crate::dedupe`]). By default an
    /// [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) of 10,000 ids.
    pub fn with_idempotency_store(mut self, store: impl crate::IdempotencyStore) -> Self {
        self.states.deduplicate_with(store);
        self
    }

    /// Starts only the listeners with these ids (by default: every listener with `auto_startup`).
    pub fn with_listeners<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.only = Some(ids.into_iter().map(str::to_owned).collect());
        self
    }

    /// Sets a property for `${name}` placeholders in listeners' `topics` and `group` (looked up
    /// here first, then as an environment variable, then the placeholder's `:default`).
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// Runs `hook` once every listener has started (Spring Boot's `ApplicationRunner`): seed data,
    /// warm a cache, announce the service. It gets the running application (its template, its
    /// bootstrap address, its assignments); clone what the hook's future needs. Hooks run in the
    /// order they were added; an error stops the application, and `start` (or `run`) returns it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), kafka_runtime::Error> {
    /// kafka_runtime::KafkaApplication::from_default_config()?
    ///     .on_started(|app| {
    ///         let template = app.template().clone();
    ///         async move {
    ///             template.send("service-events", "orders", &"started").await?;
    ///             Ok(())
    ///         }
    ///     })
    ///     .run()
    ///     .await
    /// # }
    /// ```
    pub fn on_started<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(&RunningApplication) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = HookResult> + Send + 'static,
    {
        self.hooks.on_started(hook);
        self
    }

    /// Runs `hook` when shutdown begins, while the listeners still run and the template still
    /// sends (Spring's `@PreDestroy`): say goodbye, flush a cache of one's own. Hooks run in the
    /// order they were added; an error is logged and shutdown goes on.
    pub fn on_stopping<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(&RunningApplication) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = HookResult> + Send + 'static,
    {
        self.hooks.on_stopping(hook);
        self
    }

    /// Validates the configuration and every listener registration as `start` would, without
    /// connecting; returns, per listener that would start, a line with its topics, group,
    /// concurrency and ack mode and one with its error handling (or retry topics).
    pub fn check(self) -> Result<Vec<String>, Error> {
        let registrations = self.select()?;
        self.check_overrides()?;
        let settings = &self.config.kafka;
        // Creating a client does not connect; the template only gives the extractors' checks
        // their application context.
        let bootstrap = match &settings.bootstrap_servers {
            Some(servers) if !self.config.uses_embedded_broker() => servers.joined(),
            _ => "embedded".to_owned(),
        };
        let template = KafkaTemplate::new(settings, &bootstrap)?;
        let app = AppContext::new(self.states, template, None);
        registrations
            .iter()
            .filter(|(_, auto_startup)| *auto_startup)
            .map(|(registration, _)| {
                let spec = resolve(registration, &self.config, &self.properties, &app)?;
                let errors = match &spec.retry_topics {
                    Some(retry) => spec
                        .main_topics
                        .iter()
                        .map(|main| format!("\n  retry topics: {}", retry.describe(main)))
                        .collect(),
                    None => format!("\n  errors: {}", spec.errors.describe(&spec.main_topics)),
                };
                let replies = spec
                    .send_to
                    .as_ref()
                    .map(|topic| format!("\n  replies: to `{topic}`"))
                    .unwrap_or_default();
                let explicit = spec
                    .explicit
                    .as_ref()
                    .map(|explicit| format!(" ({explicit})"))
                    .unwrap_or_default();
                Ok(format!(
                    "listener {}: topics {:?}{explicit}, group {}, concurrency {}, ack-mode {}{errors}{replies}",
                    spec.id, spec.topics, spec.group, spec.concurrency, spec.ack_mode
                ))
            })
            .collect()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration (a handler test's, set after its state).
    #[cfg(feature = "test-util")]
    pub(crate) fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The listener `id` resolved as `start` would, with a template that keeps what is sent
    /// through it: what a handler test runs.
    #[cfg(feature = "test-util")]
    pub(crate) fn handler_under_test(
        mut self,
        id: &str,
    ) -> Result<(Arc<ListenerSpec>, Arc<AppContext>), Error> {
        self.only = Some(vec![id.to_owned()]);
        let (registration, _) =
            self.select()?
                .into_iter()
                .next()
                .ok_or_else(|| Error::Listener {
                    listener: id.to_owned(),
                    message: "no such listener".to_owned(),
                })?;
        self.check_overrides()?;
        let template = KafkaTemplate::recording(&self.config.kafka);
        let app = AppContext::new(self.states, template, None);
        let spec = resolve(registration, &self.config, &self.properties, &app)?;
        Ok((spec, app))
    }

    /// Starts the listener containers and returns once they are running; records are handled in
    /// the background until [`RunningApplication::shutdown`].
    pub async fn start(mut self) -> Result<RunningApplication, Error> {
        for warning in self.config.warnings() {
            tracing::warn!("{warning}");
        }
        let registrations = self.select()?;
        self.check_overrides()?;
        let embedded = if let Some(embedded) = self.embedded.take() {
            Some(embedded)
        } else if self.config.uses_embedded_broker() {
            let embedded = match self.config.kafka.embedded.port {
                Some(port) => EmbeddedKafka::start_on_port(port)?,
                None => EmbeddedKafka::start()?,
            };
            shorten_embedded_sessions(&mut self.config.kafka);
            tracing::warn!(
                "no kafka.bootstrap-servers configured: using an embedded in-memory Kafka; its data is lost at exit"
            );
            let bootstrap = embedded.bootstrap_servers();
            tracing::info!(
                bootstrap_servers = bootstrap,
                "embedded Kafka listening; other clients use: KAFKA_BOOTSTRAP_SERVERS={bootstrap} (kcat -b {bootstrap}; set kafka.embedded.port to keep it from run to run)"
            );
            Some(embedded)
        } else {
            None
        };
        let settings = &self.config.kafka;
        let bootstrap = match &embedded {
            Some(embedded) => embedded.bootstrap_servers().to_owned(),
            None => settings
                .bootstrap_servers
                .as_ref()
                .map(|servers| servers.joined())
                .unwrap_or_default(),
        };
        let template = KafkaTemplate::new(settings, &bootstrap)?;
        if embedded.is_none() {
            crate::reachability::check(settings, &bootstrap, CONNECT_TIMEOUT).await?;
        }
        crate::admin::declare(settings, &bootstrap, embedded.as_ref(), &template).await;
        let topics = embedded
            .is_none()
            .then(|| crate::admin::TopicAdmin::new(settings, &bootstrap));
        let app = AppContext::new(self.states, template.clone(), topics);
        // The listeners that start now; the others are resolved when they start.
        let specs = registrations
            .iter()
            .filter(|(_, auto_startup)| *auto_startup)
            .map(|(registration, _)| resolve(registration, &self.config, &self.properties, &app))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(embedded) = &embedded {
            create_embedded_topics(embedded, settings, &specs).await?;
        }
        create_dead_letter_topics(settings, &bootstrap, embedded.as_ref(), &template, &specs).await;
        if let Some(topic) = &settings.template.reply_topic {
            let reply_topic = crate::admin::TopicSpec::plain(
                topic.clone(),
                i32::try_from(EMBEDDED_PARTITIONS).unwrap_or(1),
            );
            for (topic, message) in crate::admin::create_missing(
                settings,
                &bootstrap,
                embedded.as_ref(),
                &[reply_topic],
            )
            .await
            {
                tracing::warn!(topic, "cannot create the reply topic: {message}");
            }
            template
                .listen_for_replies(settings, &bootstrap, topic)
                .await?;
        }
        let management_settings = &self.config.management;
        let health = Health::new(management_settings);
        let (config, properties) = (self.config.clone(), self.properties.clone());
        let context = Arc::clone(&app);
        let publishing = (bootstrap.clone(), embedded.is_some(), template.clone());
        let all = registrations
            .iter()
            .map(|(registration, _)| {
                let spec = specs.iter().find(|spec| spec.id == registration.id());
                (*registration, spec.cloned())
            })
            .collect();
        let listeners = Listeners::new(
            all,
            Launcher {
                resolve: Box::new(move |registration| {
                    let resolved = resolve(registration, &config, &properties, &context);
                    let settings = config.kafka.clone();
                    let (bootstrap, embedded, template) = publishing.clone();
                    Box::pin(async move {
                        let spec = resolved?;
                        // The embedded cluster creates a topic on first use.
                        if !embedded {
                            let specs = [Arc::clone(&spec)];
                            create_dead_letter_topics(
                                &settings, &bootstrap, None, &template, &specs,
                            )
                            .await;
                        }
                        Ok(spec)
                    })
                }),
                settings: settings.clone(),
                bootstrap: bootstrap.clone(),
                app: Arc::clone(&app),
                health: Arc::clone(&health),
                statistics: management_settings
                    .port
                    .map(|_| management_settings.statistics_interval),
                closed: AtomicBool::new(false),
            },
        );
        let management = match management_settings.port {
            Some(port) => Some(
                Management::start(
                    management_settings,
                    port,
                    (Arc::clone(&health), Arc::clone(&listeners)),
                )
                .await?,
            ),
            None => None,
        };
        for spec in &specs {
            if let Some(listener) = listeners.get(spec.id) {
                listener.start().await?;
            }
        }
        let (started, stopping) = self.hooks.split();
        let running = RunningApplication {
            template,
            bootstrap,
            embedded,
            listeners,
            health,
            management,
            stopping,
        };
        if let Err(source) = started.run(&running).await {
            running.shutdown().await;
            return Err(Error::Hook {
                stage: "after startup",
                source,
            });
        }
        Ok(running)
    }

    /// Starts, runs until Ctrl-C or SIGTERM, then shuts down gracefully; an error if handlers
    /// were still running at `shutdown-timeout` (so that the process exits non-zero).
    pub async fn run(self) -> Result<(), Error> {
        self.start().await?.run_until_signal().await
    }

    /// Rejects `[kafka.listeners."<id>"]` tables that name no registered listener (a typo there
    /// would otherwise be ignored silently).
    fn check_overrides(&self) -> Result<(), Error> {
        let known: Vec<&str> = ListenerRegistration::all()
            .map(ListenerRegistration::id)
            .collect();
        match self
            .config
            .kafka
            .listeners
            .keys()
            .find(|id| !known.contains(&id.as_str()))
        {
            None => Ok(()),
            Some(id) => Err(Error::Listener {
                listener: id.clone(),
                message: format!(
                    "[kafka.listeners.\"{id}\"] names no listener; registered: {}",
                    known.join(", ")
                ),
            }),
        }
    }

    /// The application's listeners, sorted by id, each with whether it starts with it: the
    /// selected ones (all of them start), or every registered one (those with `auto_startup`
    /// start); rejects duplicate ids and unknown selections.
    fn select(&self) -> Result<Vec<(&'static ListenerRegistration, bool)>, Error> {
        let mut by_id: BTreeMap<&'static str, &'static ListenerRegistration> = BTreeMap::new();
        for registration in ListenerRegistration::all() {
            if let Some(first) = by_id.insert(registration.id(), registration) {
                let (first, second) =
                    ordered(first.declared.function, registration.declared.function);
                return Err(Error::DuplicateListener {
                    id: registration.id().to_owned(),
                    first,
                    second,
                });
            }
        }
        match &self.only {
            None => by_id
                .into_values()
                .map(|registration| {
                    let r = &registration.declared;
                    let own = self.config.kafka.listeners.get(r.id);
                    let attribute = r
                        .placeholder_value("auto_startup", &self.properties, "true or false")
                        .map_err(|message| Error::Listener {
                            listener: r.id.to_owned(),
                            message,
                        });
                    attribute.map(|attribute| {
                        let auto_startup = own
                            .and_then(|own| own.auto_startup)
                            .or(attribute)
                            .unwrap_or(r.auto_startup);
                        (registration, auto_startup)
                    })
                })
                .collect(),
            Some(ids) => ids
                .iter()
                .map(|id| {
                    by_id
                        .get(id.as_str())
                        .copied()
                        .map(|registration| (registration, true))
                        .ok_or_else(|| Error::Listener {
                            listener: id.clone(),
                            message: format!(
                                "no such listener; registered: {}",
                                by_id.keys().copied().collect::<Vec<_>>().join(", ")
                            ),
                        })
                })
                .collect(),
        }
    }
}

fn ordered(a: &'static str, b: &'static str) -> (&'static str, &'static str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Resolves a registration against the configuration.
fn resolve(
    registration: &'static ListenerRegistration,
    config: &Config,
    properties: &BTreeMap<String, String>,
    app: &AppContext,
) -> Result<Arc<ListenerSpec>, Error> {
    let registration = &registration.declared;
    let settings = &config.kafka;
    let listener_error = |message: String| Error::Listener {
        listener: registration.id.to_owned(),
        message,
    };
    let placeholders = |text: &str| placeholder::resolve(text, properties).map_err(listener_error);
    // `kafka.listeners."<id>".*` overrides the attribute, which overrides `kafka.listener.*`.
    let own = settings.listeners.get(registration.id);
    let (topics, pattern) = match (
        own.and_then(|own| own.topics.as_deref()),
        own.and_then(|own| own.topic_pattern.as_deref()),
    ) {
        (Some(_), Some(_)) => {
            return Err(listener_error(format!(
                "kafka.listeners.\"{}\" sets both `topics` and `topic-pattern`; keep one",
                registration.id
            )))
        }
        (Some(topics), None) => (
            topics.iter().map(|topic| placeholders(topic)).collect(),
            None,
        ),
        (None, Some(pattern)) => (Ok(Vec::new()), Some(placeholders(pattern)?)),
        (None, None) => (
            registration
                .topics
                .iter()
                .map(|topic| placeholders(topic))
                .collect::<Result<Vec<_>, _>>(),
            registration.topic_pattern.map(placeholders).transpose()?,
        ),
    };
    let topics = topics?;
    let explicit = explicit_partitions(registration, own, &placeholders)?;
    let group = own
        .and_then(|own| own.group.as_deref())
        .or(registration.group)
        .map(placeholders)
        .transpose()?
        .or_else(|| settings.consumer.group_id.clone())
        .ok_or_else(|| {
            listener_error(
                "no consumer group: set `group = \"...\"` on the listener or kafka.consumer.group-id".to_owned(),
            )
        })?;
    let send_to = registration.send_to.map(placeholders).transpose()?;
    let attribute_ack_mode = registration
        .placeholder_value(
            "ack_mode",
            properties,
            "an ack mode (record, batch, time, count, count_time, manual, manual_immediate)",
        )
        .map_err(listener_error)?;
    let ack_mode = own
        .and_then(|own| own.ack_mode)
        .or(attribute_ack_mode)
        .or(registration.ack_mode)
        .unwrap_or(settings.listener.ack_mode);
    if ack_mode.is_manual() && !registration.takes_ack {
        return Err(listener_error(format!(
            "ack mode `{ack_mode}` needs an `Ack` argument, or no record would ever be committed"
        )));
    }
    if !ack_mode.is_manual() && registration.takes_ack {
        return Err(listener_error(format!(
            "it takes an `Ack` but its ack mode is `{ack_mode}`; set ack_mode = \"manual\" \
             (or kafka.listener.ack-mode) or remove the argument"
        )));
    }
    (registration.check)(app).map_err(listener_error)?;
    let batch = matches!(registration.invoke, Invoker::Batch(_));
    if settings.listener.kind == ListenerType::Batch && !batch {
        return Err(listener_error(
            "kafka.listener.type is `batch` but its handler takes a single record; take a \
             Batch<T> (or set listener.type = \"single\")"
                .to_owned(),
        ));
    }
    let global = &settings.listener.error_handler;
    let errors = ErrorPolicy::new(
        &settings
            .listeners
            .get(registration.id)
            .map_or_else(|| global.clone(), |own| own.error_handler.or(global)),
    );
    let retry_topics = RetryTopics::new(&own.map_or_else(
        || settings.retry.topic.clone(),
        |own| own.retry_topic.or(&settings.retry.topic),
    ));
    let attribute_ordering = registration
        .placeholder_value("ordering", properties, "partition, key or none")
        .map_err(listener_error)?;
    let ordering = own
        .and_then(|own| own.ordering)
        .or(attribute_ordering)
        .or(registration.ordering)
        .unwrap_or(settings.listener.ordering);
    if batch && ordering != Ordering::Partition {
        return Err(listener_error(format!(
            "ordering `{ordering:?}` is for record listeners; a batch holds one partition's \
             records in order"
        )));
    }
    let max_parallel = own
        .and_then(|own| own.max_parallel)
        .unwrap_or(settings.listener.max_parallel)
        .max(1);
    if ordering != Ordering::Partition && retry_topics.is_some() {
        return Err(listener_error(format!(
            "ordering `{ordering:?}` retries in place, per key; retry topics need \
             ordering = \"partition\""
        )));
    }
    if batch && retry_topics.is_some() {
        return Err(listener_error(
            "retry topics are for record listeners (as in Spring); a batch listener retries in \
             place with kafka.listener.error-handler"
                .to_owned(),
        ));
    }
    let attribute_concurrency = registration
        .placeholder_value::<std::num::NonZeroU32>(
            "concurrency",
            properties,
            "a whole number of at least 1",
        )
        .map_err(listener_error)?
        .map(std::num::NonZeroU32::get);
    let transactional = settings.producer.transaction_id_prefix.clone();
    if transactional.is_some() {
        let refused = if batch {
            Some("a batch listener")
        } else if ordering != Ordering::Partition {
            Some("ordering `key` or `none`")
        } else if retry_topics.is_some() {
            Some("retry topics")
        } else if !matches!(ack_mode, crate::AckMode::Record | crate::AckMode::Batch) {
            Some("this ack mode")
        } else {
            None
        };
        if let Some(refused) = refused {
            return Err(listener_error(format!(
                "transactions (producer.transaction-id-prefix) are for record listeners with                  ordering `partition`, ack mode `record` (a transaction per record) or `batch`                  (per batch read), and the error handler's retries; not with {refused}"
            )));
        }
    }
    let positioned = match (&pattern, &explicit) {
        (Some(_), Some(_)) => Some("`partitions` name partitions of `topics`, not of a pattern"),
        (Some(_), None) if retry_topics.is_some() => {
            Some("retry topics are not derived from a `topic_pattern`; name the topics")
        }
        (None, Some(_)) if retry_topics.is_some() => {
            Some("retry topics are consumed by the group; explicit `partitions` are not")
        }
        _ => None,
    };
    let dedupe = match own.and_then(|own| own.dedupe.as_deref()) {
        Some(text) => Some((
            text,
            format!("kafka.listeners.\"{}\".dedupe", registration.id),
        )),
        None => registration
            .dedupe
            .map(|text| (text, "the attribute's `dedupe`".to_owned())),
    }
    .map(|(text, source)| {
        placeholders(text)?
            .parse::<crate::dedupe::Dedupe>()
            .map_err(|message| listener_error(format!("{source}: {message}")))
    })
    .transpose()?;
    let refused = if dedupe.is_none() {
        None
    } else if batch {
        Some("a batch listener")
    } else if transactional.is_some() {
        Some("transactions (which commit a record's output and offset together already)")
    } else {
        None
    };
    if let Some(refused) = refused {
        return Err(listener_error(format!(
            "`dedupe` (the idempotent receiver) is for record listeners outside transactions; not with {refused}"
        )));
    }
    if let Some(refused) = positioned {
        return Err(listener_error(refused.to_owned()));
    }
    let republishes = retry_topics.is_some() || errors.recoverer.dead_letter_topic("").is_some();
    let dead_letter = republishes.then(|| {
        DeadLetterPublisher::new(app.template().clone(), group.clone(), app.topics().cloned())
    });
    let main_topics = topics.clone();
    let topics = match (&retry_topics, pattern) {
        // The whole name matches, as with Java's `Pattern.matches`.
        (_, Some(pattern)) => vec![format!("^({pattern})$")],
        (None, None) => topics,
        (Some(retry), None) => main_topics
            .iter()
            .flat_map(|main| std::iter::once(main.clone()).chain(retry.retry_topics(main)))
            .collect(),
    };
    Ok(Arc::new(ListenerSpec {
        id: registration.id,
        topics,
        explicit,
        group,
        send_to: send_to.map(Arc::from),
        filter: registration.filter,
        dedupe,
        concurrency: own
            .and_then(|own| own.concurrency)
            .or(attribute_concurrency)
            .or(registration.concurrency)
            .unwrap_or(settings.listener.concurrency),
        ack_mode,
        invoke: registration.invoke,
        formats: (
            settings.consumer.key_deserializer,
            settings.consumer.value_deserializer,
        ),
        max_in_flight: usize::try_from(settings.listener.max_in_flight).unwrap_or(usize::MAX),
        ordering,
        max_parallel: usize::try_from(max_parallel).unwrap_or(usize::MAX),
        max_poll_records: settings.consumer.max_poll_records,
        ack_count: settings.listener.ack_count,
        ack_time: settings.listener.ack_time,
        poll_timeout: settings.listener.poll_timeout,
        shutdown_timeout: settings.listener.shutdown_timeout,
        revoke_timeout: settings.listener.revoke_timeout,
        idle_event_interval: settings.listener.idle_event_interval,
        correlation_header: crate::handling::correlation_header(
            &settings.listener.correlation_header,
        ),
        record_span: settings.listener.record_span,
        errors,
        retry_topics,
        main_topics,
        dead_letter,
        transactional,
    }))
}

/// The listener's explicit partitions and their initial offset: `kafka.listeners."<id>".*`
/// overriding the attribute. Errors name the key that holds the wrong value.
fn explicit_partitions(
    registration: &ListenerDeclaration,
    own: Option<&crate::config::ListenerOverrides>,
    placeholders: &dyn Fn(&str) -> Result<String, Error>,
) -> Result<Option<ExplicitPartitions>, Error> {
    let id = registration.id;
    let error = |key: &str, message: String| Error::Listener {
        listener: id.to_owned(),
        message: format!("{key}: {message}"),
    };
    // (where the value comes from, the value)
    let value = |key: &str, configured: Option<&String>, declared: Option<&'static str>| {
        let text = configured.map(String::as_str).or(declared);
        let source = match configured {
            Some(_) => format!("kafka.listeners.\"{id}\".{key}"),
            None => format!("the attribute's `{}`", key.replace('-', "_")),
        };
        text.map(|text| Ok::<_, Error>((placeholders(text)?, source)))
            .transpose()
    };
    let partitions = value(
        "partitions",
        own.and_then(|own| own.partitions.as_ref()),
        registration.partitions,
    )?;
    let initial = value(
        "initial-offset",
        own.and_then(|own| own.initial_offset.as_ref()),
        registration.initial_offset,
    )?;
    let initial =
        match (&partitions, initial) {
            (_, None) => None,
            (None, Some((_, source))) => return Err(error(
                &source,
                "an initial offset is for explicit `partitions`; a group's partitions start at \
                 its committed offsets (else consumer.auto-offset-reset)"
                    .to_owned(),
            )),
            (Some(_), Some((text, source))) => {
                Some(text.parse().map_err(|message| error(&source, message))?)
            }
        };
    partitions
        .map(|(text, source)| {
            ExplicitPartitions::parse(&text, initial).map_err(|message| error(&source, message))
        })
        .transpose()
}

/// The session timeout of consumers on the embedded cluster, unless configured: the mock
/// cluster makes a member that joins an established group wait `session.timeout.ms` - 1 s for
/// the rebalance (44 s at librdkafka's default), which a first run's `concurrency` consumers
/// starting a few seconds apart would otherwise show as a silent minute.
const EMBEDDED_SESSION_TIMEOUT_MS: i64 = 10_000;

fn shorten_embedded_sessions(settings: &mut KafkaSettings) {
    const KEY: &str = "session.timeout.ms";
    if settings.properties.get(KEY).is_none() && settings.consumer.properties.get(KEY).is_none() {
        settings
            .consumer
            .properties
            .insert(KEY, PropertyValue::Integer(EMBEDDED_SESSION_TIMEOUT_MS));
    }
}

async fn create_embedded_topics(
    embedded: &EmbeddedKafka,
    settings: &crate::config::KafkaSettings,
    specs: &[Arc<ListenerSpec>],
) -> Result<(), Error> {
    let mut partitions: BTreeMap<&str, u32> = BTreeMap::new();
    for spec in specs {
        // A declared topic was created as declared.
        let undeclared = spec.main_topics.iter().filter(|topic| {
            !settings
                .topics
                .iter()
                .any(|declared| declared.name == **topic)
        });
        for topic in undeclared {
            let named = spec.explicit.as_ref().and_then(|explicit| {
                let last = explicit.partitions.last()?;
                u32::try_from(*last).ok().map(|last| last.saturating_add(1))
            });
            let count = partitions.entry(topic).or_insert(EMBEDDED_PARTITIONS);
            *count = (*count).max(spec.concurrency).max(named.unwrap_or(0));
        }
        // Where its replies go, so that the first reply does not wait for a topic.
        if let Some(send_to) = &spec.send_to {
            if !settings
                .topics
                .iter()
                .any(|declared| *declared.name == **send_to)
            {
                partitions.entry(send_to).or_insert(EMBEDDED_PARTITIONS);
            }
        }
    }
    let topics: Vec<crate::admin::TopicSpec> = partitions
        .into_iter()
        .map(|(name, count)| {
            crate::admin::TopicSpec::plain(
                name.to_owned(),
                i32::try_from(count).unwrap_or(i32::MAX),
            )
        })
        .collect();
    let bootstrap = embedded.bootstrap_servers();
    match crate::admin::create_missing(settings, bootstrap, Some(embedded), &topics)
        .await
        .into_iter()
        .next()
    {
        None => Ok(()),
        Some((topic, message)) => Err(Error::Embedded {
            message: format!("cannot create topic `{topic}`: {message}"),
        }),
    }
}

/// Creates the dead-letter and retry topics of listeners that publish there, with as many
/// partitions as the topics they come from (so that a record keeps its partition number), when
/// missing.
async fn create_dead_letter_topics(
    settings: &crate::config::KafkaSettings,
    bootstrap: &str,
    embedded: Option<&EmbeddedKafka>,
    template: &KafkaTemplate,
    specs: &[Arc<ListenerSpec>],
) {
    let mut wanted: BTreeMap<String, i32> = BTreeMap::new();
    for spec in specs {
        for topic in &spec.main_topics {
            let mut derived: Vec<String> = Vec::new();
            match &spec.retry_topics {
                Some(retry) => {
                    derived.extend(retry.retry_topics(topic));
                    derived.push(RetryTopics::dead_letter_topic(topic));
                }
                None => derived.extend(spec.errors.recoverer.dead_letter_topic(topic)),
            }
            let mut partitions = None;
            for derived in derived {
                // Asking the mock cluster about a missing topic would create it with its defaults.
                if embedded.is_none() && template.partition_count(&derived).await.is_some() {
                    continue;
                }
                if partitions.is_none() {
                    partitions = Some(template.partition_count(topic).await.unwrap_or(1));
                }
                wanted.insert(derived, partitions.unwrap_or(1));
            }
        }
    }
    let wanted: Vec<crate::admin::TopicSpec> = wanted
        .into_iter()
        .map(|(name, partitions)| crate::admin::TopicSpec::plain(name, partitions))
        .collect();
    for (topic, error) in crate::admin::create_missing(settings, bootstrap, embedded, &wanted).await
    {
        tracing::warn!(
            %topic, %error,
            "cannot create a dead-letter or retry topic; publishing to it will fail until it exists"
        );
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    abandoned: Vec<String>,
}

impl ShutdownReport {
    pub(crate) fn of(abandoned: Vec<String>) -> Self {
        ShutdownReport { abandoned }
    }

    /// Whether every in-flight handler finished within `shutdown-timeout`.
    pub fn is_clean(&self) -> bool {
        self.abandoned.is_empty()
    }

    /// The records whose handlers were still running at the timeout, as `topic-partition@offset`;
    /// they are uncommitted and will be delivered again.
    pub fn abandoned(&self) -> &[String] {
        &self.abandoned
    }
}

/// Per consumer name, its assigned (topic, partition)s.
pub type ConsumerAssignments = BTreeMap<String, Vec<(String, i32)>>;

/// A started application. Drop it only after [`shutdown`](RunningApplication::shutdown).
pub struct RunningApplication {
    template: KafkaTemplate,
    bootstrap: String,
    embedded: Option<EmbeddedKafka>,
    listeners: Arc<Listeners>,
    health: Arc<Health>,
    management: Option<Management>,
    stopping: Stopping,
}

impl RunningApplication {
    /// The producer template.
    pub fn template(&self) -> &KafkaTemplate {
        &self.template
    }

    /// The bootstrap servers in use (the embedded cluster's, if it runs).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The embedded cluster, when no bootstrap servers were configured.
    pub fn embedded(&self) -> Option<&EmbeddedKafka> {
        self.embedded.as_ref()
    }

    /// Per running listener id, per consumer (`<listener>-<index>`), the partitions the group
    /// assigned to it right now.
    pub fn assignments(&self) -> BTreeMap<&'static str, ConsumerAssignments> {
        self.listeners.assignments()
    }

    /// The listener `id` of this application, to pause, resume, stop or start at run time
    /// (Spring's `KafkaListenerEndpointRegistry.getListenerContainer`); `None` when the
    /// application has no such listener. An application has every registered listener (or the
    /// ones [`KafkaApplication::with_listeners`] selected), running or not.
    pub fn listener(&self, id: &str) -> Option<ListenerHandle> {
        self.listeners.get(id)
    }

    /// Every listener of the application, by id.
    pub fn listeners(&self) -> Vec<ListenerHandle> {
        self.listeners.all().collect()
    }

    /// Where the management endpoint (`/health`, `/metrics`) listens, when `management.port` is set.
    pub fn management_address(&self) -> Option<std::net::SocketAddr> {
        self.management.as_ref().map(Management::address)
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down; an error names the records abandoned at
    /// `shutdown-timeout`.
    pub async fn run_until_signal(self) -> Result<(), Error> {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let report = self.shutdown().await;
        if report.is_clean() {
            Ok(())
        } else {
            Err(Error::ShutdownTimedOut {
                abandoned: report.abandoned,
            })
        }
    }

    /// Stops fetching, lets in-flight handlers finish within `shutdown-timeout`, commits every
    /// acknowledged offset, flushes the template and leaves the consumer groups.
    pub async fn shutdown(mut self) -> ShutdownReport {
        std::mem::take(&mut self.stopping).run(&self).await;
        self.health.stopping();
        let abandoned = self.listeners.shut_down().await;
        let template = self.template.clone();
        let flushed = tokio::task::spawn_blocking(move || template.flush(CONNECT_TIMEOUT)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "producer flush at shutdown failed; unsent records were lost");
        }
        drop(self.template);
        drop(self.management);
        drop(self.embedded);
        tracing::info!("stopped");
        ShutdownReport { abandoned }
    }
}
