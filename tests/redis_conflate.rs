//! Issue 24 on Redis (a real `redis-server` on a free loopback port): the conflation key
//! travels with the event in its stream entry (field `k`; an entry written without one
//! reads as keyless), so that a subscriber on another instance conflates the same way,
//! and a resumer replayed from Redis with `conflate_replay` gets the newest event of
//! each key (and every keyless one), bounded: past `conflate_keys` it gets every event.
//!
//! Two hubs of this process on one Redis, each with its own storage (its own writer and
//! reader), are two instances. A subscriber is held without polling it while the other
//! instance publishes; waits have deadlines and fail with a message.

#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use support::redis::RedisServer;
use support::*;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::hub::{HubBuilder, LagPolicy, RedisStorage};
use tower_sse::{Event, Hub, LastEventId, SseLayer, Subscription};

/// Hang guard of every wait; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(30);

fn instance(builder: HubBuilder, url: &str, prefix: &str) -> Hub {
    builder
        .redis(RedisStorage::new(url).unwrap().prefix(prefix))
        .build()
}

fn id_of(event: &Event) -> u64 {
    std::str::from_utf8(event.as_bytes())
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id line")
        .parse()
        .unwrap()
}

/// Publishes and waits until Redis stored it; its id.
async fn stored(hub: &Hub, topic: &str, key: Option<&str>, data: &str) -> u64 {
    let event = Event::data(data);
    let published = match key {
        Some(key) => hub.publish_keyed(topic, key, event),
        None => hub.publish(topic, event),
    };
    timeout(GUARD, published.unwrap().acknowledged())
        .await
        .expect("hang guard: stored")
        .unwrap()
}

/// Waits until `hub` holds every id up to `id`.
async fn caught_up(hub: &Hub, id: u64) {
    timeout(GUARD, async {
        while hub.last_id() < id {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("hang guard: the hub catches up");
}

/// The next event of a subscription, within the guard.
async fn next_event(subscription: &mut Subscription, what: &str) -> Event {
    timeout(GUARD, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what}"))
        .expect("the subscription goes on")
        .expect("no error")
}

/// What the subscription has now, polled until it would wait.
fn drain(subscription: &mut Subscription) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(Some(event)) = subscription.next().now_or_never() {
        events.push(event.expect("no error"));
    }
    events
}

/// Events of `subscription` until (and with) the one with id `last`.
async fn until(subscription: &mut Subscription, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        ids.push(id_of(
            &next_event(subscription, &format!("up to {last}: {ids:?}")).await,
        ));
    }
    ids
}

/// Publishes keyless markers on `topic` through `publisher` until `subscription` (on
/// another instance) reads one, then reads up to the last: from then on it reads what
/// the other instance publishes, and has read everything before. The markers' ids.
async fn until_live(publisher: &Hub, topic: &str, subscription: &mut Subscription) -> Vec<u64> {
    let mut markers = Vec::new();
    timeout(GUARD, async {
        loop {
            markers.push(stored(publisher, topic, None, "marker").await);
            let read = timeout(Duration::from_millis(100), subscription.next()).await;
            if let Ok(Some(event)) = read {
                // (It may start with what was published just before it subscribed:
                // this instance had not heard of it yet.)
                let mut read = id_of(&event.unwrap());
                while Some(&read) != markers.last() {
                    read = id_of(&next_event(subscription, "the markers").await);
                }
                return;
            }
        }
    })
    .await
    .expect("hang guard: the subscriber goes live");
    markers
}

async fn connect(
    addr: SocketAddr,
    uri: &str,
    last_event_id: u64,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    let request = get(uri).header("last-event-id", last_event_id.to_string());
    let response = h1_connect(addr)
        .await
        .send(request.body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    events(response)
}

/// The key is stored in the stream entry (field `k`), never in the frame; an entry
/// written without it (as before keys were stored) replays as a keyless event. A
/// resumer on another instance, from before all of them, gets in short: every keyless
/// event and the newest of each key, in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_travels_in_the_stream_entry_and_an_entry_without_one_is_keyless() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p1");
    let b = instance(Hub::builder().conflate_replay(true), &url, "p1");
    let start = stored(&a, "t", None, "start").await;
    let k1 = stored(&a, "t", Some("k1"), "k1 first").await;
    let n1 = stored(&a, "t", None, "keyless").await;

    // An entry as an older version wrote it: no `k`.
    let mut conn = redis.connection();
    let epoch: String = ::redis::cmd("GET")
        .arg("{p1}:epoch")
        .query(&mut conn)
        .unwrap();
    let start_of_epoch = epoch.rsplit(':').next().unwrap().to_owned();
    let old: u64 = ::redis::cmd("EVAL")
        .arg(
            "local id = string.format('%d', redis.call('INCR', KEYS[1])) \
             redis.call('XADD', KEYS[2], id .. '-0', 'e', ARGV[1], 'p', ARGV[2], 's', ARGV[3]) \
             return tonumber(id)",
        )
        .arg(2)
        .arg("{p1}:seq")
        .arg("{p1}:topic:t")
        .arg("data: old\n\n")
        .arg(n1)
        .arg(&start_of_epoch)
        .query(&mut conn)
        .unwrap();
    let k1_newer = stored(&a, "t", Some("k1"), "k1 second").await;
    let k2 = stored(&a, "t", Some("k2"), "k2").await;

    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("{p1}:topic:t")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let key_of = |id: u64| {
        let (_, fields) = entries
            .iter()
            .find(|(entry, _)| *entry == format!("{id}-0"))
            .unwrap();
        fields
            .iter()
            .find(|(f, _)| f == "k")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(key_of(k1).as_deref(), Some("k1"));
    assert_eq!(key_of(k2).as_deref(), Some("k2"));
    assert_eq!(key_of(n1), None);
    assert_eq!(key_of(old), None);
    let frames: Vec<String> = support::redis::RedisServer::stored(&redis, "{p1}:topic:t")
        .into_iter()
        .map(|(_, frame)| frame)
        .collect();
    assert_eq!(frames[1], "data: k1 first\n\n", "no key in the frame");

    let mut resumed = b.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    let ids = until(&mut resumed, k2).await;
    assert_eq!(ids, [n1, old, k1_newer, k2]);
    assert!(k1 < n1 && old < k1_newer);
    assert_eq!(b.stats("t").unwrap().conflated, 1);
}

/// A subscriber on one instance that falls behind under `LagPolicy::Conflate` while the
/// other instance publishes receives the newest event of each key and every keyless
/// one, exactly, then live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_another_instance_conflates_the_same_way() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p2");
    let b = instance(
        Hub::builder()
            .queue_events(4)
            .lag_policy(LagPolicy::Conflate),
        &url,
        "p2",
    );
    let mut slow = b.subscribe(["positions"], None);
    let markers = until_live(&a, "positions", &mut slow).await;
    let hello = *markers.last().unwrap();
    let mut newest = BTreeMap::new();
    let mut keyless = Vec::new();
    for round in 0..10 {
        for key in ["a", "b", "c"] {
            let id = stored(&a, "positions", Some(key), &format!("{key} {round}")).await;
            newest.insert(key, id);
        }
        if round == 4 {
            keyless.push(stored(&a, "positions", None, "notice").await);
        }
    }
    let last = *newest.values().max().unwrap();
    caught_up(&b, last).await;
    let mut expected: Vec<u64> = newest.values().copied().chain(keyless).collect();
    expected.sort_unstable();
    let events = drain(&mut slow);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
    assert!(expected[0] > hello);
    let stats = b.stats("positions").unwrap();
    assert_eq!(
        (stats.conflated, stats.conflate_fallbacks),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.keys, 3);

    let live = stored(&a, "positions", Some("a"), "live").await;
    assert_eq!(id_of(&next_event(&mut slow, "live").await), live);
}

/// A page that resumes on another instance, over a real connection, from before 60
/// rounds of 20 keys that instance never held: replayed from Redis page by page,
/// keeping the newest of each key, it receives 21 events (a keyless one, then the
/// newest of every key) instead of 1,201, then live events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumer_on_another_instance_replays_from_redis_in_short() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p3");
    let b = instance(Hub::builder().conflate_replay(true), &url, "p3");
    let server = serve(
        ServiceBuilder::new()
            .layer(SseLayer::new())
            .service(b.clone()),
    )
    .await;
    let start = stored(&a, "positions", None, "start").await;
    let keys: Vec<String> = (0..20).map(|n| format!("k{n:02}")).collect();
    let mut newest = BTreeMap::new();
    let mut last = 0;
    for round in 0..60 {
        let publishes: Vec<_> = keys
            .iter()
            .map(|key| {
                let event = Event::data(&format!("{key} {round}"));
                (
                    key.clone(),
                    a.publish_keyed("positions", key, event).unwrap(),
                )
            })
            .collect();
        for (key, published) in publishes {
            let id = timeout(GUARD, published.acknowledged())
                .await
                .unwrap_or_else(|_| panic!("hang guard: {key} stored in round {round}"))
                .unwrap();
            newest.insert(key, id);
            last = last.max(id);
        }
        if round == 30 {
            stored(&a, "positions", None, "keyless").await;
        }
    }
    caught_up(&b, last).await;
    let mut stream = connect(server.addr, "/events?topic=positions", start).await;
    let mut got = Vec::new();
    for n in 0..21 {
        let event = timeout(GUARD, stream.next())
            .await
            .unwrap_or_else(|_| panic!("hang guard: event {n}: {got:?}"))
            .unwrap();
        got.push((event.id, event.data));
    }
    let mut expected = vec![got[0].clone()];
    assert_eq!(got[0].1, "keyless");
    expected.extend(
        keys.iter()
            .map(|k| (newest[k].to_string(), format!("{k} 59"))),
    );
    assert_eq!(got, expected);
    let live = stored(&a, "positions", Some("k00"), "live").await;
    let event = timeout(GUARD, stream.next())
        .await
        .expect("hang guard: the live event")
        .unwrap();
    assert_eq!(
        (event.id, event.data),
        (live.to_string(), "live".to_owned())
    );
    assert_eq!(b.stats("positions").unwrap().conflated, 1);
}

/// What a resumer missed partly before its topic was watched on this instance (replayed
/// from Redis) and partly after (in the topic's key index here) comes as one snapshot: a
/// key that moved since is sent once, at its newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_redis_and_the_local_index_hold_joins_into_one_snapshot() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p4");
    let b = instance(Hub::builder().conflate_replay(true), &url, "p4");
    let start = stored(&a, "t", None, "start").await;
    let mut first = BTreeMap::new();
    for key in ["a", "b", "c"] {
        first.insert(key, stored(&a, "t", Some(key), &format!("{key} 1")).await);
    }
    // A reader on b: the topic is watched (its key index kept) from now on.
    let mut reader = b.subscribe(["t"], None);
    let markers = until_live(&a, "t", &mut reader).await;
    let a2 = stored(&a, "t", Some("a"), "a 2").await;
    let b2 = stored(&a, "t", Some("b"), "b 2").await;
    caught_up(&b, b2).await;

    let mut resumed = b.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    let ids = until(&mut resumed, b2).await;
    let mut expected = vec![first["c"]];
    expected.extend(markers);
    expected.extend([a2, b2]);
    assert_eq!(ids, expected);
}

/// Past `conflate_keys` distinct keys in what it missed, a resumer replayed from Redis
/// gets every event instead, and `conflate_fallbacks` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_key_cap_a_resumer_replays_every_event_from_redis() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p5");
    let b = instance(
        Hub::builder().conflate_replay(true).conflate_keys(5),
        &url,
        "p5",
    );
    let start = stored(&a, "t", None, "start").await;
    let mut ids = Vec::new();
    for n in 0..300 {
        ids.push(stored(&a, "t", Some(&format!("key {n}")), "x").await);
    }
    caught_up(&b, *ids.last().unwrap()).await;
    let mut resumed = b.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    assert_eq!(until(&mut resumed, *ids.last().unwrap()).await, ids);
    let stats = b.stats("t").unwrap();
    assert_eq!(
        (stats.conflated, stats.conflate_fallbacks),
        (0, 1),
        "{stats:?}"
    );
}

/// A resumer that got its snapshot from Redis and then falls behind under
/// `LagPolicy::Conflate` before reading anything live catches up in short again (it has
/// everything up to where the snapshot reached), not with the reset event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_snapshot_from_redis_falling_behind_conflates_again() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let url = redis.url();
    let a = instance(Hub::builder(), &url, "p6");
    let b = instance(
        Hub::builder()
            .conflate_replay(true)
            .lag_policy(LagPolicy::Conflate)
            .queue_events(4),
        &url,
        "p6",
    );
    let start = stored(&a, "t", None, "start").await;
    let mut first = BTreeMap::new();
    for round in 0..5 {
        for key in ["a", "b", "c"] {
            first.insert(
                key,
                stored(&a, "t", Some(key), &format!("{key} {round}")).await,
            );
        }
    }
    // The log moves on elsewhere: the topic is watched here from above its last event.
    let elsewhere = stored(&a, "other", None, "x").await;
    caught_up(&b, elsewhere).await;
    let mut resumed = b.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    assert_eq!(
        until(&mut resumed, first["c"]).await,
        [first["a"], first["b"], first["c"]]
    );
    let mut newest = BTreeMap::new();
    for round in 5..15 {
        for key in ["b", "c"] {
            newest.insert(
                key,
                stored(&a, "t", Some(key), &format!("{key} {round}")).await,
            );
        }
    }
    caught_up(&b, newest["c"]).await;
    let events = drain(&mut resumed);
    assert_eq!(
        events.iter().map(id_of).collect::<Vec<_>>(),
        [newest["b"], newest["c"]]
    );
    let stats = b.stats("t").unwrap();
    assert_eq!(
        (stats.conflated, stats.conflate_fallbacks),
        (2, 0),
        "{stats:?}"
    );
}
