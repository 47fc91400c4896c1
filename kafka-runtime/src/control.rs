//! Listener control at run time (Spring's `KafkaListenerEndpointRegistry` and
//! `MessageListenerContainer`): pause and resume a listener or one of its partitions, stop it and
//! start it again, start one declared with `auto_startup = false`.
//!
//! A listener that does not start with the application is resolved against the configuration
//! when it starts (its placeholders may name properties that exist only when it is enabled).
//!
//! A pause is the application's, not the group's: it is kept in a `watch` every partition task
//! of the listener reads, so a partition assigned after a rebalance starts paused too (Spring
//! Kafka lost pauses across rebalances: spring-kafka#2222). A paused partition finishes the
//! records it was handling, reads nothing more, and is paused in librdkafka (nothing is
//! fetched); its acknowledgments and commits go on. A stop is a listener's own shutdown: its
//! handlers finish within `shutdown-timeout`, what they acknowledged is committed and its
//! consumers leave the group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, Shared};
use futures_util::FutureExt;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::app::{ConsumerAssignments, ShutdownReport};
use crate::config::KafkaSettings;
use crate::container::{ListenerContainer, ListenerSpec};
use crate::context::AppContext;
use crate::error::Error;
use crate::listener::ListenerRegistration;
use crate::management::health::Health;
use crate::sync::lock;

/// What the application paused of one listener.
#[derive(Debug, Default)]
pub(crate) struct Paused {
    all: bool,
    partitions: BTreeSet<(String, i32)>,
}

impl Paused {
    /// Whether `topic`-`partition` reads nothing.
    pub(crate) fn covers(&self, topic: &str, partition: i32) -> bool {
        self.all
            || self
                .partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition)
    }
}

/// Resolves a listener's registration against the application's configuration, and creates the
/// topics it publishes to (dead-letter, retry).
pub(crate) type Resolve = Box<
    dyn Fn(&'static ListenerRegistration) -> BoxFuture<'static, Result<Arc<ListenerSpec>, Error>>
        + Send
        + Sync,
>;

/// A listener's stop under way: its consumers' join, which every waiter shares.
type Stopping = Shared<BoxFuture<'static, Vec<String>>>;

/// Where [`ListenerHandle::seek`] moves a partition (Spring's `ConsumerSeekCallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeekTo {
    /// This offset.
    Offset(i64),
    /// The first offset the partition still has.
    Beginning,
    /// The end: only records written from now on.
    End,
    /// The first record with a timestamp at or after this one (milliseconds since the epoch);
    /// the end when there is none.
    Timestamp(i64),
}

/// What starting a listener needs, the same for every listener of an application.
pub(crate) struct Launcher {
    pub(crate) resolve: Resolve,
    pub(crate) settings: KafkaSettings,
    pub(crate) bootstrap: String,
    pub(crate) app: Arc<AppContext>,
    pub(crate) health: Arc<Health>,
    pub(crate) statistics: Option<Duration>,
    /// Set at shutdown: nothing starts any more.
    pub(crate) closed: AtomicBool,
}

/// One listener of a running application.
struct Listener {
    registration: &'static ListenerRegistration,
    /// Resolved at the application's start, or at the listener's first start.
    spec: Mutex<Option<Arc<ListenerSpec>>>,
    /// Its consumers while it runs.
    container: Mutex<Option<ListenerContainer>>,
    /// Its last stop, which the application's shutdown waits for too.
    stopping: Mutex<Option<Stopping>>,
    paused: watch::Sender<Paused>,
}

/// The listeners of a running application, by id.
pub(crate) struct Listeners {
    by_id: BTreeMap<&'static str, Arc<Listener>>,
    launcher: Arc<Launcher>,
}

impl Listeners {
    /// Every listener of the application, stopped; each with its spec when it was resolved
    /// already.
    pub(crate) fn new(
        listeners: Vec<(&'static ListenerRegistration, Option<Arc<ListenerSpec>>)>,
        launcher: Launcher,
    ) -> Arc<Self> {
        let by_id = listeners
            .into_iter()
            .map(|(registration, spec)| {
                let listener = Listener {
                    registration,
                    spec: Mutex::new(spec),
                    container: Mutex::new(None),
                    stopping: Mutex::new(None),
                    paused: watch::Sender::new(Paused::default()),
                };
                (registration.id(), Arc::new(listener))
            })
            .collect();
        Arc::new(Listeners {
            by_id,
            launcher: Arc::new(launcher),
        })
    }

    /// The listener `id`, if the application has it.
    pub(crate) fn get(&self, id: &str) -> Option<ListenerHandle> {
        let listener = self.by_id.get(id)?;
        Some(ListenerHandle {
            listener: Arc::clone(listener),
            launcher: Arc::clone(&self.launcher),
        })
    }

    /// Every listener, by id.
    pub(crate) fn all(&self) -> impl Iterator<Item = ListenerHandle> + '_ {
        self.by_id.values().map(|listener| ListenerHandle {
            listener: Arc::clone(listener),
            launcher: Arc::clone(&self.launcher),
        })
    }

    /// Stops every listener (all at once) and closes the application to starts; gives the
    /// records abandoned at the shutdown timeout.
    pub(crate) async fn shut_down(&self) -> Vec<String> {
        self.launcher.closed.store(true, Ordering::Release);
        for handle in self.all() {
            handle.begin_stop();
        }
        // Those stopping now, and stops begun earlier and not finished yet.
        let stopping: Vec<Stopping> = self
            .by_id
            .values()
            .filter_map(|listener| lock(&listener.stopping).clone())
            .filter(|stopping| stopping.peek().is_none())
            .collect();
        let mut abandoned = Vec::new();
        for stop in stopping {
            abandoned.extend(stop.await);
        }
        abandoned
    }

    /// `GET /listeners`: each listener's id, state, group, topics, paused partitions,
    /// assignment and lag.
    pub(crate) fn describe(&self) -> Value {
        self.all().map(|handle| handle.describe()).collect()
    }

    /// Per running listener, per consumer, the partitions assigned to it.
    pub(crate) fn assignments(&self) -> BTreeMap<&'static str, ConsumerAssignments> {
        self.by_id
            .iter()
            .filter_map(|(id, listener)| {
                let running = lock(&listener.container);
                let assignments = running.as_ref()?.assignments().into_iter().collect();
                Some((*id, assignments))
            })
            .collect()
    }
}

/// A listener of a running application, from
/// [`RunningApplication::listener`](crate::RunningApplication::listener) (Spring's
/// `MessageListenerContainer`).
///
/// ```no_run
/// # async fn demo(app: kafka_runtime::RunningApplication) -> Result<(), kafka_runtime::Error> {
/// let orders = app.listener("handle_order").expect("a listener of this application");
/// orders.pause();                        // finishes what it handles, reads nothing more
/// orders.resume();
/// orders.pause_partition("orders", 3);   // only that partition
/// let report = orders.stop().await;      // its own graceful shutdown: commits, leaves the group
/// assert!(report.is_clean());
/// orders.start().await?;                 // joins again, from the committed offsets
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ListenerHandle {
    listener: Arc<Listener>,
    launcher: Arc<Launcher>,
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl ListenerHandle {
    /// The listener's id.
    pub fn id(&self) -> &'static str {
        self.listener.registration.id()
    }

    /// Whether its consumers run (paused or not).
    pub fn is_running(&self) -> bool {
        lock(&self.listener.container).is_some()
    }

    /// Whether the whole listener is paused.
    pub fn is_paused(&self) -> bool {
        self.listener.paused.borrow().all
    }

    /// Pauses every partition of the listener, now and after any rebalance, until
    /// [`resume`](Self::resume): each finishes the records it is handling and reads nothing
    /// more. The consumers stay in their group.
    pub fn pause(&self) {
        self.listener.paused.send_modify(|paused| paused.all = true);
        tracing::info!(listener = self.id(), "listener paused");
    }

    /// Resumes the listener; partitions paused one by one stay paused.
    pub fn resume(&self) {
        self.listener
            .paused
            .send_modify(|paused| paused.all = false);
        tracing::info!(listener = self.id(), "listener resumed");
    }

    /// Pauses one partition of the listener (whichever of its consumers has it, now or later).
    pub fn pause_partition(&self, topic: &str, partition: i32) {
        self.listener.paused.send_modify(|paused| {
            paused.partitions.insert((topic.to_owned(), partition));
        });
        tracing::info!(listener = self.id(), topic, partition, "partition paused");
    }

    /// Resumes a partition paused with [`pause_partition`](Self::pause_partition).
    pub fn resume_partition(&self, topic: &str, partition: i32) {
        self.listener.paused.send_modify(|paused| {
            paused.partitions.remove(&(topic.to_owned(), partition));
        });
        tracing::info!(listener = self.id(), topic, partition, "partition resumed");
    }

    /// Moves `topic`-`partition` to `to`, on whichever consumer of the listener has it now:
    /// the handler in progress finishes, then the partition reads from there (a record handed
    /// out before and acknowledged later is committed as usual; records skipped forward are
    /// committed once a record after them is acknowledged). `false` when no consumer of the
    /// listener has the partition. Not for listeners with `ordering` `key` or `none` (logged).
    pub fn seek(&self, topic: &str, partition: i32, to: SeekTo) -> bool {
        lock(&self.listener.container)
            .as_ref()
            .is_some_and(|running| running.seek(topic, partition, to))
    }

    /// The partitions paused one by one, as (topic, partition).
    pub fn paused_partitions(&self) -> Vec<(String, i32)> {
        self.listener
            .paused
            .borrow()
            .partitions
            .iter()
            .cloned()
            .collect()
    }

    /// Starts the listener's consumers (`concurrency` of them), which join its group; nothing
    /// when it runs already. A listener declared with `auto_startup = false` starts here.
    ///
    /// # Errors
    /// When the application is shutting down, the listener's configuration does not resolve
    /// (its first start), or a consumer cannot be created.
    pub async fn start(&self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let launcher = &self.launcher;
        let closed = || {
            launcher
                .closed
                .load(Ordering::Acquire)
                .then(|| Error::Listener {
                    listener: self.id().to_owned(),
                    message: "cannot start: the application is shutting down".to_owned(),
                })
        };
        if let Some(error) = closed() {
            return Err(error);
        }
        let spec = self.spec().await?;
        let mut container = lock(&self.listener.container);
        if container.is_some() {
            return Ok(());
        }
        if let Some(error) = closed() {
            return Err(error);
        }
        tracing::info!(
            listener = spec.id,
            topics = ?spec.topics,
            group = %spec.group,
            concurrency = spec.concurrency,
            ack_mode = %spec.ack_mode,
            "starting listener"
        );
        *container = Some(ListenerContainer::start(
            Arc::clone(&spec),
            (&launcher.settings, &launcher.bootstrap),
            &launcher.app,
            &self.listener.paused.subscribe(),
            &launcher.health,
            launcher.statistics,
        )?);
        Ok(())
    }

    /// Stops the listener as a shutdown does: its handlers finish within `shutdown-timeout`,
    /// what they acknowledged is committed, its consumers leave the group (the others of the
    /// group take its partitions). Nothing when it is stopped already. A pause is kept.
    ///
    /// The stop goes on when this future is dropped; the application's shutdown waits for it.
    pub async fn stop(&self) -> ShutdownReport {
        match self.begin_stop() {
            Some(stopping) => ShutdownReport::of(stopping.await),
            None => ShutdownReport::default(),
        }
    }

    /// Signals the running container to stop and hands its join to a task of its own; `None`
    /// when nothing runs.
    fn begin_stop(&self) -> Option<Stopping> {
        let container = lock(&self.listener.container).take()?;
        tracing::info!(listener = self.id(), "stopping listener");
        container.signal_stop();
        // Its consumers are stopping on purpose: neither dead nor unready from now on.
        self.launcher.health.forget(container.health());
        let join = tokio::spawn(container.join());
        let stopping = async move { join.await.unwrap_or_default() }
            .boxed()
            .shared();
        *lock(&self.listener.stopping) = Some(stopping.clone());
        Some(stopping)
    }

    /// The listener's resolved configuration (resolved now, the first time).
    async fn spec(&self) -> Result<Arc<ListenerSpec>, Error> {
        if let Some(spec) = lock(&self.listener.spec).as_ref() {
            return Ok(Arc::clone(spec));
        }
        let resolved = (self.launcher.resolve)(self.listener.registration).await?;
        *lock(&self.listener.spec) = Some(Arc::clone(&resolved));
        Ok(resolved)
    }

    /// The listener as `GET /listeners` shows it.
    fn describe(&self) -> Value {
        let declared = &self.listener.registration.declared;
        let spec = lock(&self.listener.spec).clone();
        let assignment: Option<BTreeMap<String, Vec<String>>> =
            lock(&self.listener.container).as_ref().map(|running| {
                running
                    .assignments()
                    .into_iter()
                    .map(|(consumer, partitions)| {
                        let names = partitions
                            .iter()
                            .map(|(topic, partition)| format!("{topic}-{partition}"))
                            .collect();
                        (consumer, names)
                    })
                    .collect()
            });
        let state = match (&assignment, self.is_paused()) {
            (None, _) => "stopped",
            (Some(_), true) => "paused",
            (Some(_), false) => "running",
        };
        let paused: Vec<String> = self
            .paused_partitions()
            .iter()
            .map(|(topic, partition)| format!("{topic}-{partition}"))
            .collect();
        // Not started yet: as declared, placeholders unresolved.
        let (group, topics, concurrency) = match &spec {
            Some(spec) => (
                json!(spec.group),
                json!(spec.topics),
                json!(spec.concurrency),
            ),
            None => (
                json!(declared.group),
                json!(declared
                    .topic_pattern
                    .map_or_else(|| declared.topics.to_vec(), |pattern| vec![pattern])),
                json!(declared.concurrency),
            ),
        };
        json!({
            "id": self.id(),
            "state": state,
            "group": group,
            "topics": topics,
            "concurrency": concurrency,
            "paused-partitions": paused,
            "assignment": assignment.unwrap_or_default(),
            "lag": self.launcher.health.lag_of(self.id()),
        })
    }
}
