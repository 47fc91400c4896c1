//! What handlers share: registered state and the producer template.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use crate::template::KafkaTemplate;

/// The application's shared values, reachable from every record through extractors.
pub struct AppContext {
    states: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    template: KafkaTemplate,
}

impl AppContext {
    pub(crate) fn new(states: States, template: KafkaTemplate) -> Arc<Self> {
        Arc::new(AppContext {
            states: states.0,
            template,
        })
    }

    /// The value of type `T` registered with
    /// [`KafkaApplication::with_state`](crate::KafkaApplication::with_state).
    pub fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.states
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
    }

    /// The application's producer template.
    pub fn template(&self) -> &KafkaTemplate {
        &self.template
    }
}

/// Values registered before start, keyed by type.
#[derive(Default)]
pub(crate) struct States(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl States {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }
}
