//! The application's callbacks for its listeners' consumers: partitions assigned and revoked
//! (Spring's `ConsumerAwareRebalanceListener`) and idle consumers (Spring's
//! `ListenerContainerIdleEvent`, `listener.idle-event-interval`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{unique, Cluster, Recorder, PATIENCE};
use kafka_runtime::prelude::*;
use kafka_runtime::{ConsumerEvent, ListenerEvents};

#[kafka_listener(
    id = "watched",
    topics = "${topic}",
    group = "${group}",
    auto_startup = false
)]
async fn watched(Payload(text): Payload<String>, State(seen): State<Recorder<String>>) {
    seen.push(text);
}

/// Every event, as a line.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("events").clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    async fn wait_for(&self, prefix: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.count(prefix) < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            self.count(prefix) >= count,
            "{count} `{prefix}` events expected: {:?}",
            self.lines()
        );
    }
}

impl ListenerEvents for Events {
    fn partitions_assigned(&self, consumer: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let mut numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        numbers.sort_unstable();
        let line = format!(
            "assigned {} {} {numbers:?}",
            consumer.listener, consumer.consumer
        );
        self.0.lock().expect("events").push(line);
    }

    fn partitions_revoked(&self, consumer: &ConsumerEvent<'_>, partitions: &[(String, i32)]) {
        let mut numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        numbers.sort_unstable();
        let line = format!("revoked {} {numbers:?}", consumer.consumer);
        self.0.lock().expect("events").push(line);
    }

    fn idle(&self, consumer: &ConsumerEvent<'_>, idle_for: Duration) {
        assert!(idle_for >= Duration::from_millis(500), "{idle_for:?}");
        let line = format!("idle {} {}", consumer.consumer, consumer.group);
        self.0.lock().expect("events").push(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_hears_of_assignments_revocations_and_idle_consumers() {
    let cluster = Cluster::start();
    let (topic, group) = (cluster.topic("watched", 2), unique("watched"));
    let events = Events::default();
    let seen = Recorder::<String>::default();
    let app = cluster
        .application("[kafka.listener]\nidle-event-interval = \"500ms\"\n")
        .with_listeners(["watched"])
        .with_property("topic", &topic)
        .with_property("group", &group)
        .with_state(seen.clone())
        .with_events(events.clone())
        .start()
        .await
        .expect("application starts");
    events.wait_for("assigned", 1).await;
    assert!(
        events
            .lines()
            .contains(&"assigned watched watched-0 [0, 1]".to_owned()),
        "{:?}",
        events.lines()
    );

    // Nothing to read: idle, and told again every interval.
    events.wait_for("idle", 2).await;
    assert!(events.lines().contains(&format!("idle watched-0 {group}")));

    // Records keep it busy; then it is idle again.
    for n in 0..5 {
        cluster.kit().record(&topic).text(&format!("v{n}")).await;
    }
    seen.wait_len(5).await;
    let before = events.count("idle");
    events.wait_for("idle", before + 1).await;

    let listener = app.listener("watched").expect("listener");
    assert!(listener.stop().await.is_clean());
    events.wait_for("revoked", 1).await;
    assert!(
        events
            .lines()
            .contains(&"revoked watched-0 [0, 1]".to_owned()),
        "{:?}",
        events.lines()
    );
    app.shutdown().await;
}
