//! Issue 19: a Redis hub's tasks (writer, reader, and the one that applies what the
//! reader reads) and the runtimes they run on. A hub built outside any runtime starts
//! them on its first use inside one (and says why it cannot publish before); a hub whose
//! runtime went away starts them again on the next runtime that uses it, losing nothing.
//! Against a real `redis-server` on a free loopback port.

#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::redis::RedisServer;
use tokio::runtime::Runtime;
use tokio::time::timeout;
use tower_sse::hub::{PublishError, RedisStorage, Subscription};
use tower_sse::{Event, Hub, LastEventId};

/// Hang guard of every wait; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(30);

fn redis_hub(url: &str, prefix: &str) -> Hub {
    Hub::builder()
        .redis(RedisStorage::new(url).unwrap().prefix(prefix))
        .build()
}

/// The id of the next event of `subscription`, and its data.
async fn next(subscription: &mut Subscription) -> (u64, String) {
    let event = timeout(GUARD, subscription.next())
        .await
        .expect("hang guard: an event")
        .expect("the stream goes on")
        .expect("an event");
    let text = std::str::from_utf8(event.as_bytes()).unwrap().to_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
            .to_owned()
    };
    (field("id: ").parse().unwrap(), field("data: "))
}

async fn acknowledged(hub: &Hub, topic: &str, data: &str) -> u64 {
    let published = hub.publish(topic, Event::data(data)).unwrap();
    timeout(GUARD, published.acknowledged())
        .await
        .expect("hang guard: Redis acknowledges the event")
        .unwrap()
}

#[test]
fn a_hub_built_outside_a_runtime_starts_its_tasks_on_first_use_inside_one() {
    let redis = RedisServer::start();
    let hub = redis_hub(&redis.url(), "outside");
    let err = hub.publish("t", Event::data("too early")).unwrap_err();
    assert!(matches!(err, PublishError::NoRuntime), "{err:?}");
    assert!(err.to_string().contains("runtime"), "{err}");

    let runtime = Runtime::new().unwrap();
    runtime.block_on(async {
        let mut subscription = hub.subscribe(["t"], None);
        let id = acknowledged(&hub, "t", "inside").await;
        assert_eq!(next(&mut subscription).await, (id, "inside".to_owned()));
    });
    // The tasks run now: a thread outside any runtime publishes too.
    let published = hub
        .publish("t", Event::data("from a plain thread"))
        .expect("taken: the tasks run");
    // (The deadline's timer is made inside the runtime, as the await is.)
    let id = runtime
        .block_on(async { timeout(GUARD, published.acknowledged()).await })
        .expect("hang guard: Redis acknowledges the event from a plain thread")
        .unwrap();
    assert!(id > 0);
}

#[test]
fn a_hub_whose_runtime_went_away_starts_its_tasks_again_on_the_next_one() {
    let redis = RedisServer::start();
    let first = Runtime::new().unwrap();
    let (hub, mut subscription, before) = first.block_on(async {
        let hub = redis_hub(&redis.url(), "runtimes");
        let mut subscription = hub.subscribe(["t"], None);
        let mut before = Vec::new();
        for n in 0..3 {
            let id = acknowledged(&hub, "t", &format!("first {n}")).await;
            assert_eq!(next(&mut subscription).await.0, id);
            before.push(id);
        }
        (hub, subscription, before)
    });
    drop(first);

    // No runtime runs the tasks, and there is none here to start them on.
    let err = hub.publish("t", Event::data("nowhere")).unwrap_err();
    assert!(matches!(err, PublishError::NoRuntime), "{err:?}");

    let second = Runtime::new().unwrap();
    second.block_on(async {
        let id = acknowledged(&hub, "t", "second").await;
        assert!(id > before[2]);
        // The subscription made on the first runtime goes on.
        assert_eq!(next(&mut subscription).await, (id, "second".to_owned()));
        // A resumer, and a subscriber on a topic the new reader has to watch.
        let resume = LastEventId::new(before[0].to_string());
        let mut resumed = hub.subscribe(["t"], Some(&resume));
        assert_eq!(next(&mut resumed).await.0, before[1]);
        assert_eq!(next(&mut resumed).await.0, before[2]);
        assert_eq!(next(&mut resumed).await.0, id);
        let mut other = hub.subscribe(["u"], None);
        let on_u = acknowledged(&hub, "u", "on u").await;
        assert_eq!(next(&mut other).await, (on_u, "on u".to_owned()));
    });
}
