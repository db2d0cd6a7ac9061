//! Issue 19, item 6: no `subscribe` input makes the hub panic, in memory or on Redis
//! (a real `redis-server`). A handler that builds the topic list and the resume id from
//! a request reaches any of them: empty lists, empty names, duplicates, unicode, very
//! long names; ids of every shape (`u64::MAX`, 0, "", "-1", "+5", " 5", 30 digits, not
//! a number, above the newest, below the first). Every edge case is tried, then random
//! ones (proptest); each subscription is polled a bounded number of steps while events
//! are published on its topics.

mod support;

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use proptest::prelude::*;
use tower_sse::{Event, Hub, LastEventId, Subscription};

/// Cases per property: `default`, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Topic lists: edge cases first.
fn edge_topics() -> Vec<Vec<String>> {
    vec![
        vec![],
        vec![String::new()],
        vec![String::new(), String::new()],
        vec!["a".into(), "a".into()],
        vec!["a".into(), String::new(), "b".into(), "a".into()],
        vec!["ก-ข 🚀".into()],
        vec!["x".repeat(100_000)],
        vec!["a".into(), "\0\r\n".into()],
    ]
}

/// Id shapes: those that need the hub's first and newest ids are computed from them.
#[derive(Clone, Debug)]
enum Id {
    Absent,
    Text(String),
    AboveNewest(u64),
    BelowFirst(u64),
    Newest,
    First,
}

fn edge_ids() -> Vec<Id> {
    let mut ids = vec![Id::Absent, Id::Newest, Id::First];
    ids.extend([1, 1000].map(Id::AboveNewest));
    ids.extend([1, 1000].map(Id::BelowFirst));
    for text in [
        u64::MAX.to_string().as_str(),
        "0",
        "",
        "-1",
        "+5",
        " 5",
        "5 ",
        "123456789012345678901234567890",
        "18446744073709551616",
        "not-a-number",
        "1e5",
        "٣",
    ] {
        ids.push(Id::Text(text.to_owned()));
    }
    ids
}

fn topics_strategy() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        Just(String::new()),
        "[ab]{1,2}",
        "\\PC{0,6}",
        ("[a-z]", 1..5000usize).prop_map(|(c, n)| c.repeat(n)),
    ];
    prop::collection::vec(name, 0..5)
}

fn id_strategy() -> impl Strategy<Value = Id> {
    prop_oneof![
        Just(Id::Absent),
        Just(Id::Newest),
        Just(Id::First),
        any::<u64>().prop_map(|n| Id::AboveNewest(n % 10_000 + 1)),
        any::<u64>().prop_map(|n| Id::BelowFirst(n % 10_000 + 1)),
        any::<u64>().prop_map(|n| Id::Text(n.to_string())),
        "[-+ 0-9a-z]{0,32}".prop_map(Id::Text),
        "\\PC{0,8}".prop_map(Id::Text),
    ]
}

/// The `Last-Event-ID` of `id` on a hub whose events run from `first` to `newest`.
fn last_event_id(id: &Id, first: u64, newest: u64) -> Option<LastEventId> {
    let text = match id {
        Id::Absent => return None,
        Id::Text(text) => text.clone(),
        Id::AboveNewest(n) => newest.saturating_add(*n).to_string(),
        Id::BelowFirst(n) => first.saturating_sub(*n).to_string(),
        Id::Newest => newest.to_string(),
        Id::First => first.to_string(),
    };
    Some(LastEventId::new(text))
}

/// What a subscription must show whatever it was given: no empty name, no duplicate.
fn check_topics(subscription: &Subscription, asked: &[String]) {
    let topics: Vec<&str> = subscription.topics().collect();
    assert!(!topics.contains(&""), "{topics:?}");
    let mut distinct = topics.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), topics.len(), "{topics:?}");
    assert!(topics.iter().all(|t| asked.iter().any(|a| a == t)));
}

/// Publishes on the subscription's topics and polls it `steps` times (without
/// waiting): nothing may panic.
fn poll_in_memory(hub: &Hub, mut subscription: Subscription, steps: usize) {
    let topics: Vec<String> = subscription.topics().map(str::to_owned).collect();
    for topic in &topics {
        hub.publish(topic, Event::data("live")).unwrap();
    }
    for _ in 0..steps {
        match subscription.next().now_or_never() {
            Some(Some(_)) => {}
            Some(None) | None => break,
        }
    }
}

#[test]
fn no_subscribe_input_panics_an_in_memory_hub() {
    let hub = Hub::builder().history_events(3).build();
    let mut ids = Vec::new();
    for n in 0..5 {
        for topic in ["a", "b", "ก-ข 🚀"] {
            ids.push(
                hub.publish(topic, Event::data(&n.to_string()))
                    .unwrap()
                    .id()
                    .unwrap(),
            );
        }
    }
    let (first, newest) = (ids[0], *ids.last().unwrap());
    let run = |topics: &[String], id: &Id| {
        let last = last_event_id(id, first, newest);
        let subscription = hub.subscribe(topics, last.as_ref());
        check_topics(&subscription, topics);
        poll_in_memory(&hub, subscription, 16);
    };
    for topics in edge_topics() {
        for id in edge_ids() {
            run(&topics, &id);
        }
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases(512)));
    runner
        .run(&(topics_strategy(), id_strategy()), |(topics, id)| {
            run(&topics, &id);
            Ok(())
        })
        .unwrap();
}

#[cfg(feature = "redis")]
#[test]
#[cfg_attr(
    not(feature = "test-redis"),
    ignore = "needs redis-server: cargo test --features test-redis"
)]
fn no_subscribe_input_panics_a_redis_hub() {
    use support::redis::RedisServer;
    use tower_sse::hub::RedisStorage;

    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let storage = RedisStorage::new(&redis.url()).unwrap().prefix("inputs");
    let hub = runtime.block_on(async { Hub::builder().redis(storage).build() });
    let mut ids = Vec::new();
    runtime.block_on(async {
        for n in 0..5 {
            for topic in ["a", "b"] {
                let published = hub.publish(topic, Event::data(&n.to_string())).unwrap();
                let acknowledged = published.acknowledged();
                let id = support::within("Redis to acknowledge the event", acknowledged).await;
                ids.push(id.unwrap());
            }
        }
    });
    let (first, newest) = (ids[0], *ids.last().unwrap());
    let run = |topics: &[String], id: &Id| {
        runtime.block_on(async {
            let last = last_event_id(id, first, newest);
            let mut subscription = hub.subscribe(topics, last.as_ref());
            check_topics(&subscription, topics);
            // A few steps, each bounded: the subscription may wait on Redis.
            for _ in 0..3 {
                match tokio::time::timeout(Duration::from_millis(20), subscription.next()).await {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        });
    };
    for topics in edge_topics() {
        for id in edge_ids() {
            run(&topics, &id);
        }
    }
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases(64)));
    runner
        .run(&(topics_strategy(), id_strategy()), |(topics, id)| {
            run(&topics, &id);
            Ok(())
        })
        .unwrap();
}
