//! What handlers share: registered state and the producer template.

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::admin::TopicAdmin;
use crate::dedupe::{IdempotencyStore, InMemoryIdempotencyStore};
use crate::events::ListenerEvents;
use crate::intercept::RecordInterceptor;
use crate::template::KafkaTemplate;

/// The application's shared values, reachable from every record through extractors.
pub struct AppContext {
    /// A handful of values, looked up for every record that asks for one: a scan of a short list
    /// costs less than hashing the key.
    states: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
    template: KafkaTemplate,
    interceptors: Vec<Box<dyn RecordInterceptor>>,
    events: Vec<Box<dyn ListenerEvents>>,
    idempotency: Arc<dyn IdempotencyStore>,
    topics: Option<TopicAdmin>,
}

impl AppContext {
    /// `topics`: where topics found missing while the application runs are created (`None`
    /// on the embedded cluster, which creates them on first use, and in handler tests).
    pub(crate) fn new(
        states: States,
        template: KafkaTemplate,
        topics: Option<TopicAdmin>,
    ) -> Arc<Self> {
        Arc::new(AppContext {
            states: states.values,
            template,
            interceptors: states.interceptors,
            events: states.events,
            idempotency: states
                .idempotency
                .unwrap_or_else(|| Arc::new(InMemoryIdempotencyStore::default())),
            topics,
        })
    }

    /// Creates topics found missing while the application runs; `None` on the embedded cluster.
    pub(crate) fn topics(&self) -> Option<&TopicAdmin> {
        self.topics.as_ref()
    }

    /// Where deduplicating listeners keep the ids of processed records.
    pub(crate) fn idempotency(&self) -> &Arc<dyn IdempotencyStore> {
        &self.idempotency
    }

    /// The callbacks for the listeners' consumers' events.
    pub(crate) fn events(&self) -> &[Box<dyn ListenerEvents>] {
        &self.events
    }

    /// The interceptors around every record handler call, in order.
    pub(crate) fn interceptors(&self) -> &[Box<dyn RecordInterceptor>] {
        &self.interceptors
    }

    /// The value of type `T` registered with
    /// [`KafkaApplication::with_state`](crate::KafkaApplication::with_state).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let wanted = TypeId::of::<T>();
        self.states
            .iter()
            .find(|(id, _)| *id == wanted)
            .and_then(|(_, value)| value.downcast_ref::<T>())
    }

    /// The application's producer template.
    pub fn template(&self) -> &KafkaTemplate {
        &self.template
    }
}

/// What an application registers before start: values keyed by type, interceptors and event
/// callbacks.
#[derive(Default)]
pub(crate) struct States {
    values: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
    interceptors: Vec<Box<dyn RecordInterceptor>>,
    events: Vec<Box<dyn ListenerEvents>>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
}

impl States {
    /// Sets the store of deduplicating listeners.
    pub(crate) fn deduplicate_with(&mut self, store: impl IdempotencyStore) {
        self.idempotency = Some(Arc::new(store));
    }

    /// Registers `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.values.retain(|(existing, _)| *existing != id);
        self.values.push((id, Box::new(value)));
    }

    /// Adds event callbacks after those registered already.
    pub(crate) fn listen(&mut self, events: impl ListenerEvents) {
        self.events.push(Box::new(events));
    }

    /// Adds an interceptor after those registered already.
    pub(crate) fn intercept(&mut self, interceptor: impl RecordInterceptor) {
        self.interceptors.push(Box::new(interceptor));
    }
}
