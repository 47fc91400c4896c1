//! What handlers share: registered state and the producer template.

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::template::KafkaTemplate;

/// The application's shared values, reachable from every record through extractors.
pub struct AppContext {
    /// A handful of values, looked up for every record that asks for one: a scan of a short list
    /// costs less than hashing the key.
    states: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
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

/// Values registered before start, keyed by type.
#[derive(Default)]
pub(crate) struct States(Vec<(TypeId, Box<dyn Any + Send + Sync>)>);

impl States {
    /// Registers `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        self.0.retain(|(existing, _)| *existing != id);
        self.0.push((id, Box::new(value)));
    }
}
