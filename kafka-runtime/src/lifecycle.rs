//! Lifecycle hooks: code of the service's own that runs once its listeners are running (Spring
//! Boot's `ApplicationRunner`) and before they stop (`@PreDestroy`, `SmartLifecycle.stop`).

use std::future::Future;

use futures_util::future::BoxFuture;

use crate::app::RunningApplication;

/// What a lifecycle hook gives back: an error stops a starting application (and is the error
/// of `start` / `run`); a stopping hook's error is logged and shutdown goes on.
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type Hook = Box<dyn FnOnce(&RunningApplication) -> BoxFuture<'static, HookResult> + Send>;

/// The hooks of one application, in registration order.
#[derive(Default)]
pub(crate) struct Hooks {
    started: Vec<Hook>,
    stopping: Vec<Hook>,
}

impl Hooks {
    pub(crate) fn on_started<F, Fut>(&mut self, hook: F)
    where
        F: FnOnce(&RunningApplication) -> Fut + Send + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.started.push(Box::new(move |app| Box::pin(hook(app))));
    }

    pub(crate) fn on_stopping<F, Fut>(&mut self, hook: F)
    where
        F: FnOnce(&RunningApplication) -> Fut + Send + 'static,
        Fut: Future<Output = HookResult> + Send + 'static,
    {
        self.stopping.push(Box::new(move |app| Box::pin(hook(app))));
    }

    /// Splits off the stopping hooks, which the running application keeps for its shutdown.
    pub(crate) fn split(self) -> (Started, Stopping) {
        (Started(self.started), Stopping(self.stopping))
    }
}

/// The hooks that run once the listeners run.
pub(crate) struct Started(Vec<Hook>);

impl Started {
    /// Runs the hooks one after the other; the first error ends it.
    pub(crate) async fn run(self, app: &RunningApplication) -> HookResult {
        for hook in self.0 {
            hook(app).await?;
        }
        Ok(())
    }
}

/// The hooks that run before the listeners stop.
#[derive(Default)]
pub(crate) struct Stopping(Vec<Hook>);

impl Stopping {
    /// Runs every hook, logging the errors: shutdown goes on regardless.
    pub(crate) async fn run(self, app: &RunningApplication) {
        for hook in self.0 {
            if let Err(error) = hook(app).await {
                tracing::error!(%error, "a before-shutdown hook failed; shutting down anyway");
            }
        }
    }
}
