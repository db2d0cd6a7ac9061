//! Issue 24: conflation by key. A subscriber that falls behind under
//! `LagPolicy::Conflate` receives, in id order, the newest event it missed of each key
//! and every keyless event, then goes on live; a resumer with `conflate_replay` gets the
//! same from its `Last-Event-ID`. Bounded: past `conflate_keys` distinct keys (or the
//! keyless events of the live window) the hub falls back to what it does without
//! conflation and `TopicStats::conflate_fallbacks` says so. Keys are checked and never
//! written to the client.
//!
//! A slow subscriber is made deterministic by holding its subscription without polling
//! it while publishing (in-process), or, over a real connection, by publishing while the
//! server's task cannot run (a current-thread runtime) or while the client stops
//! reading. Waits have deadlines and fail with a message; nothing sleeps to synchronise.
//!
//! `aircraft_figures` prints the figures of issue 24, point 6 (run it with
//! `--nocapture`): what a client 10 s and 60 s behind a feed of 320 aircraft reporting
//! once a second receives to catch up, under each policy.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use support::*;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::hub::{LagPolicy, PublishError, SubscriptionError};
use tower_sse::{Event, Hub, LastEventId, SseLayer, Subscription};

/// The id of an event as the hub encoded it.
fn id_of(event: &Event) -> u64 {
    text(event)
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id line")
        .parse()
        .unwrap()
}

fn text(event: &Event) -> &str {
    std::str::from_utf8(event.as_bytes()).unwrap()
}

/// The data of an event as the hub encoded it.
fn data_of(event: &Event) -> &str {
    text(event)
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line")
}

/// Everything the subscription has for now, polled until it would wait: in-process,
/// what a held subscription has is ready at once. Errors end it.
fn drain(subscription: &mut Subscription) -> (Vec<Event>, Option<SubscriptionError>) {
    let mut events = Vec::new();
    loop {
        match subscription.next().now_or_never() {
            Some(Some(Ok(event))) => events.push(event),
            Some(Some(Err(err))) => return (events, Some(err)),
            Some(None) | None => return (events, None),
        }
    }
}

/// A report of aircraft `key` at `second`, about the size of the aircraft example's.
fn report(key: &str, second: u64) -> Event {
    let data = format!(
        r#"{{"icao24":"{key}","callsign":"THA{key}","lat":{:.4},"lon":{:.4},"altitude":10668,"speed":251.3,"track":{:.1},"on_ground":false}}"#,
        13.69 + second as f64 * 0.01,
        100.75 + second as f64 * 0.01,
        (second * 7 % 360) as f64
    );
    Event::builder()
        .event("position")
        .data(&data)
        .build()
        .unwrap()
}

/// The aircraft's keys: `000`, `001`, ...
fn fleet(aircraft: usize) -> Vec<String> {
    (0..aircraft).map(|n| format!("{n:03}")).collect()
}

async fn hub_server(hub: Hub) -> TestServer {
    serve(ServiceBuilder::new().layer(SseLayer::new()).service(hub)).await
}

async fn connect(
    addr: SocketAddr,
    uri: &str,
    last_event_id: Option<&str>,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    let mut request = get(uri);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = within("the response", async {
        h1_connect(addr)
            .await
            .send(request.body(empty()).unwrap())
            .await
    })
    .await;
    assert_eq!(response.status(), 200);
    events(response)
}

async fn next(
    stream: &mut (impl Stream<Item = eventsource_stream::Event> + Unpin),
    what: &str,
) -> eventsource_stream::Event {
    timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap_or_else(|_| panic!("no event within 10 s: {what}"))
        .unwrap_or_else(|| panic!("the stream ended: {what}"))
}

/// Empty and huge keys are refused with a typed error before anything is published;
/// 1 to 256 bytes are taken (counted in bytes of UTF-8). The key is never written: a
/// keyed event's frame is the frame of the same event published without a key.
#[tokio::test]
async fn keys_are_checked_and_never_written_to_the_client() {
    let hub = Hub::builder().lag_policy(LagPolicy::Conflate).build();
    let mut subscription = hub.subscribe(["t"], None);
    for (key, len) in [
        (String::new(), 0),
        ("k".repeat(257), 257),
        ("é".repeat(129), 258),
        ("x".repeat(1 << 20), 1 << 20),
    ] {
        let refused = hub.publish_keyed("t", &key, Event::data("x")).unwrap_err();
        assert!(
            matches!(refused, PublishError::InvalidKey { len: l } if l == len),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("1 to 256 bytes"), "{refused}");
    }
    assert!(matches!(
        hub.publish_keyed("", "k", Event::data("x")),
        Err(PublishError::EmptyTopic)
    ));
    assert_eq!(
        hub.stats("t").unwrap().published,
        0,
        "nothing was published"
    );

    let mut ids = Vec::new();
    for key in [
        "k".repeat(256),
        "é".repeat(128),
        "a".into(),
        "\0\r\n ".into(),
    ] {
        ids.push(
            hub.publish_keyed("t", &key, Event::data("same"))
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    ids.push(hub.publish("t", Event::data("same")).unwrap().id().unwrap());
    let (events, end) = drain(&mut subscription);
    assert_eq!(end, None);
    let frames: Vec<String> = events.iter().map(|e| text(e).to_owned()).collect();
    let expected: Vec<String> = ids
        .iter()
        .map(|id| format!("data: same\nid: {id}\n\n"))
        .collect();
    assert_eq!(frames, expected);
    assert_eq!(hub.stats("t").unwrap().keys, 4);
}

/// A subscriber 8 events behind with a window of 8 reads all of them; past the window
/// it receives, in id order, the newest event it missed of each key and every keyless
/// one it missed (exactly), then goes on live; the counters say what happened.
#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_the_newest_event_of_each_key_and_every_keyless_one() {
    let hub = Hub::builder()
        .queue_events(8)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut subscription = hub.subscribe(["t"], None);
    // Within its window: every event.
    let mut within = Vec::new();
    for n in 0..8u64 {
        let key = ["a", "b"][n as usize % 2];
        within.push(
            hub.publish_keyed("t", key, report(key, n))
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    let (events, end) = drain(&mut subscription);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), within);
    assert_eq!(end, None);

    // 3 keys, 10 rounds, a keyless event after rounds 2 and 7: 32 events behind.
    let mut newest = BTreeMap::new();
    let mut keyless = Vec::new();
    for round in 0..10u64 {
        for key in ["a", "b", "c"] {
            let id = hub
                .publish_keyed("t", key, report(key, round))
                .unwrap()
                .id()
                .unwrap();
            newest.insert(key, id);
        }
        if round == 2 || round == 7 {
            let notice = Event::builder()
                .event("notice")
                .data(&format!("round {round}"))
                .build()
                .unwrap();
            keyless.push(hub.publish("t", notice).unwrap().id().unwrap());
        }
    }
    // "b" does not move in a last round: its newest is from round 9.
    for key in ["a", "c"] {
        let id = hub
            .publish_keyed("t", key, report(key, 10))
            .unwrap()
            .id()
            .unwrap();
        newest.insert(key, id);
    }
    let mut expected: Vec<u64> = newest.values().copied().chain(keyless.clone()).collect();
    expected.sort_unstable();
    let (events, end) = drain(&mut subscription);
    assert_eq!(end, None, "it goes on");
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
    let b = events.iter().find(|e| id_of(e) == newest["b"]).unwrap();
    assert_eq!(data_of(b), data_of(&report("b", 9)));
    assert_eq!(
        events
            .iter()
            .filter(|e| text(e).starts_with("event: notice"))
            .map(data_of)
            .collect::<Vec<_>>(),
        ["round 2", "round 7"]
    );

    // Then live, every event.
    let live = hub
        .publish_keyed("t", "a", report("a", 11))
        .unwrap()
        .id()
        .unwrap();
    let (events, _) = drain(&mut subscription);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), [live]);
    let stats = hub.stats("t").unwrap();
    assert_eq!(
        (stats.lagged, stats.conflated, stats.conflate_fallbacks),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.dropped, 34 - 5, "{stats:?}");
    assert_eq!(stats.delivered, 8 + 5 + 1, "{stats:?}");
    assert_eq!(stats.keys, 3);
}

/// A subscriber that falls behind again before it has read what it missed gets the
/// newest of each key since the last event it read: nothing it still had to read is
/// lost, nothing superseded is sent.
#[tokio::test]
async fn falling_behind_again_while_catching_up_loses_nothing() {
    let hub = Hub::builder()
        .queue_events(4)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut subscription = hub.subscribe(["t"], None);
    let keys = fleet(600);
    let mut ids = BTreeMap::new();
    for round in 0..3 {
        for key in &keys {
            ids.insert(
                key.clone(),
                hub.publish_keyed("t", key, report(key, round))
                    .unwrap()
                    .id()
                    .unwrap(),
            );
        }
    }
    // Reads 300 of the 600 it missed (more than one batch), then falls behind again:
    // keys 0..200 move, the rest do not.
    let mut got = Vec::new();
    for _ in 0..300 {
        got.push(id_of(
            &within("the next event of subscription", subscription.next())
                .await
                .unwrap()
                .unwrap(),
        ));
    }
    let first: Vec<u64> = ids.values().copied().collect();
    assert_eq!(got, first[..300]);
    for key in &keys[..200] {
        ids.insert(
            key.clone(),
            hub.publish_keyed("t", key, report(key, 3))
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    let (events, end) = drain(&mut subscription);
    assert_eq!(end, None);
    got.extend(events.iter().map(id_of));
    // Keys 300..600 as they were, then keys 0..200 anew; keys 200..300 were read.
    let mut expected = first[..300].to_vec();
    expected.extend(keys[300..].iter().map(|k| ids[k]));
    expected.extend(keys[..200].iter().map(|k| ids[k]));
    assert_eq!(got, expected);
    assert_eq!(hub.stats("t").unwrap().conflated, 2);
}

/// A subscription over several topics that all fall behind receives what each missed
/// in short, merged in id order, then live events of all of them in order.
#[tokio::test]
async fn several_topics_conflate_in_one_id_order() {
    let hub = Hub::builder()
        .queue_events(5)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut subscription = hub.subscribe(["x", "y", "z"], None);
    let mut newest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut keyless = Vec::new();
    for round in 0..20u64 {
        for topic in ["x", "y", "z"] {
            for key in ["1", "2"] {
                let id = hub
                    .publish_keyed(topic, key, report(key, round))
                    .unwrap()
                    .id()
                    .unwrap();
                newest.insert((topic, key), id);
            }
        }
        if round % 7 == 3 {
            keyless.push(
                hub.publish("y", Event::data("keyless"))
                    .unwrap()
                    .id()
                    .unwrap(),
            );
        }
    }
    // All three fell behind (40 events each, a window of 5): the newest of their two
    // keys each, and the three keyless events of y.
    let mut expected: Vec<u64> = newest.values().copied().chain(keyless).collect();
    expected.sort_unstable();
    let (events, end) = drain(&mut subscription);
    assert_eq!(end, None);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
    for topic in ["x", "y", "z"] {
        assert_eq!(hub.stats(topic).unwrap().conflated, 1, "{topic}");
    }
    // Live, in order across topics.
    let live: Vec<u64> = ["z", "x", "y", "x"]
        .iter()
        .map(|t| {
            hub.publish_keyed(t, "1", Event::data("live"))
                .unwrap()
                .id()
                .unwrap()
        })
        .collect();
    let (events, _) = drain(&mut subscription);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), live);
}

/// A subscriber that keeps up receives every event, keyed or not, and nothing in
/// short; the key index costs it nothing.
#[tokio::test]
async fn a_subscriber_that_keeps_up_receives_every_event() {
    let hub = Hub::builder()
        .queue_events(4)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut subscription = hub.subscribe(["t"], None);
    for n in 0..1000u64 {
        let key = n.to_string();
        let id = if n % 3 == 0 {
            hub.publish("t", Event::data("keyless"))
        } else {
            hub.publish_keyed("t", &key[..1], report(&key, n))
        }
        .unwrap()
        .id()
        .unwrap();
        let event = within("the next event of subscription", subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id_of(&event), id);
    }
    let stats = hub.stats("t").unwrap();
    assert_eq!((stats.lagged, stats.conflated, stats.dropped), (0, 0, 0));
    assert_eq!(stats.delivered, 1000);
}

/// The key index is kept only when the hub conflates: under `LagPolicy::Conflate`
/// while the topic has subscribers; with `conflate_replay`, always; otherwise never
/// (publishing with a key still works).
#[tokio::test]
async fn the_key_index_is_kept_only_when_needed() {
    let plain = Hub::new();
    let _reader = plain.subscribe(["t"], None);
    plain.publish_keyed("t", "k", Event::data("x")).unwrap();
    assert_eq!(plain.stats("t").unwrap().keys, 0);

    let conflating = Hub::builder().lag_policy(LagPolicy::Conflate).build();
    conflating
        .publish_keyed("t", "k", Event::data("x"))
        .unwrap();
    assert_eq!(conflating.stats("t").unwrap().keys, 0, "nobody reads it");
    let reader = conflating.subscribe(["t"], None);
    conflating
        .publish_keyed("t", "k", Event::data("x"))
        .unwrap();
    conflating
        .publish_keyed("t", "l", Event::data("x"))
        .unwrap();
    assert_eq!(conflating.stats("t").unwrap().keys, 2);
    drop(reader);
    assert_eq!(
        conflating.stats("t").unwrap().keys,
        0,
        "its last reader left"
    );

    let replaying = Hub::builder().conflate_replay(true).build();
    replaying.publish_keyed("t", "k", Event::data("x")).unwrap();
    assert_eq!(replaying.stats("t").unwrap().keys, 1, "for resumers");
}

/// Issue 24, bad input: a million distinct keys on one topic. The index holds at most
/// `conflate_keys` of them; a subscriber that fell behind past what it holds gets the
/// reset event (`lagged`) and goes on live; `conflate_fallbacks` says so. One that fell
/// behind by fewer keys than the cap still conflates.
#[tokio::test]
async fn a_million_keys_stay_bounded_and_past_the_cap_the_reset_says_so() {
    const CAP: usize = 1000;
    let hub = Hub::builder()
        .queue_events(64)
        .conflate_keys(CAP)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut behind = hub.subscribe(["t"], None);
    let event = Event::data("x");
    for n in 0..1_000_000u32 {
        hub.publish_keyed("t", &n.to_string(), event.clone())
            .unwrap();
    }
    assert_eq!(hub.stats("t").unwrap().keys, CAP);
    let mut within = hub.subscribe(["t"], None);
    let mut ids = Vec::new();
    for n in 0..CAP as u32 {
        ids.push(
            hub.publish_keyed("t", &format!("again {n}"), event.clone())
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    assert_eq!(hub.stats("t").unwrap().keys, CAP);

    let (events, end) = drain(&mut behind);
    assert_eq!(end, None);
    assert_eq!(events.len(), 1, "the reset event alone");
    assert!(text(&events[0]).starts_with("event: stream-reset\ndata: lagged\n"));
    let (events, end) = drain(&mut within);
    assert_eq!(end, None);
    assert_eq!(
        events.iter().map(id_of).collect::<Vec<_>>(),
        ids,
        "in short: all {CAP} keys"
    );
    let stats = hub.stats("t").unwrap();
    assert_eq!(
        (stats.lagged, stats.conflated, stats.conflate_fallbacks),
        (2, 1, 1),
        "{stats:?}"
    );
    let live = hub
        .publish_keyed("t", "live", event.clone())
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(
        drain(&mut behind).0.iter().map(id_of).collect::<Vec<_>>(),
        [live]
    );
}

/// Keyless events are never conflated: when more of them were missed than the live
/// window holds, the subscriber gets the reset event instead, and the counter says so.
#[tokio::test]
async fn more_keyless_events_than_the_window_fall_back_to_the_reset() {
    let hub = Hub::builder()
        .queue_events(8)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let mut subscription = hub.subscribe(["t"], None);
    for n in 0..20 {
        hub.publish_keyed("t", "k", Event::data("keyed")).unwrap();
        if n % 2 == 0 {
            hub.publish("t", Event::data("keyless")).unwrap();
        }
    }
    let (events, _) = drain(&mut subscription);
    assert_eq!(events.len(), 1);
    assert!(text(&events[0]).starts_with("event: stream-reset\ndata: lagged\n"));
    assert_eq!(hub.stats("t").unwrap().conflate_fallbacks, 1);
}

/// Over a real connection, with the server's task unable to run while the feed is
/// published (a current-thread runtime): the client, caught up first, then 60 rounds
/// of 320 keys behind, receives exactly the newest report of every key, in id order,
/// then live events; nothing it missed is sent twice.
#[tokio::test]
async fn over_a_connection_a_client_behind_receives_the_newest_report_of_every_key() {
    let hub = Hub::builder()
        .queue_events(320)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let server = hub_server(hub.clone()).await;
    let mut stream = connect(server.addr, "/events?topic=positions", None).await;
    wait_for("the subscriber", || {
        hub.stats("positions").is_some_and(|s| s.subscribers == 1)
    })
    .await;
    let first = hub
        .publish("positions", Event::data("hello"))
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(next(&mut stream, "hello").await.id, first.to_string());

    // Published while the server's task cannot run: it reads nothing meanwhile.
    let keys = fleet(320);
    let mut newest = BTreeMap::new();
    for second in 0..60 {
        for key in &keys {
            let id = hub
                .publish_keyed("positions", key, report(key, second))
                .unwrap()
                .id()
                .unwrap();
            newest.insert(key.clone(), id);
        }
    }
    let expected: Vec<(String, String)> = keys
        .iter()
        .map(|key| {
            (
                newest[key].to_string(),
                data_of(&report(key, 59)).to_owned(),
            )
        })
        .collect();
    let mut got = Vec::new();
    for n in 0..320 {
        let event = next(&mut stream, &format!("report {n}")).await;
        assert_eq!(event.event, "position");
        got.push((event.id, event.data));
    }
    assert_eq!(got, expected);
    let live = hub
        .publish("positions", Event::data("live"))
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(next(&mut stream, "live").await.id, live.to_string());
    let stats = hub.stats("positions").unwrap();
    assert_eq!(
        (stats.conflated, stats.dropped),
        (1, 19_200 - 320),
        "{stats:?}"
    );
}

/// Over a real connection, a client that stops reading while its server writes (the
/// socket's buffers fill up, then its live window): once it reads again it receives
/// what was written before it stopped, then, in short, the newest report of every key,
/// then live events. Whatever the buffers held, ids only go up, every key ends on its
/// newest report, and it receives far fewer events than were published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_connection_a_client_that_stops_reading_ends_on_the_newest_report_of_every_key() {
    const ROUNDS: u64 = 200;
    let hub = Hub::builder()
        .queue_events(320)
        .lag_policy(LagPolicy::Conflate)
        .build();
    let server = hub_server(hub.clone()).await;
    let mut stream = connect(server.addr, "/events?topic=positions", None).await;
    wait_for("the subscriber", || {
        hub.stats("positions").is_some_and(|s| s.subscribers == 1)
    })
    .await;
    let keys = fleet(320);
    let pad = "p".repeat(900);
    let mut newest = BTreeMap::new();
    for round in 0..ROUNDS {
        for key in &keys {
            let event = Event::builder()
                .event("position")
                .data(&format!("{key} {round} {pad}"))
                .build()
                .unwrap();
            let id = hub
                .publish_keyed("positions", key, event)
                .unwrap()
                .id()
                .unwrap();
            newest.insert(key.clone(), id);
        }
    }
    let published = ROUNDS * 320;
    let last = *newest.values().max().unwrap();
    // It reads again.
    let mut ids = Vec::new();
    let mut last_of: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let event = next(&mut stream, &format!("after {} events", ids.len())).await;
        let id: u64 = event.id.parse().unwrap();
        assert_eq!(event.event, "position", "no reset");
        last_of.insert(event.data.split(' ').next().unwrap().to_owned(), id);
        ids.push(id);
        if id == last {
            break;
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids only go up");
    assert_eq!(last_of, newest, "every key ends on its newest report");
    let stats = hub.stats("positions").unwrap();
    assert!(stats.conflated >= 1, "{stats:?}");
    assert!(
        (ids.len() as u64) < published / 2,
        "{} of {published} events",
        ids.len()
    );
}

/// With `conflate_replay`, a page that comes back after a minute away (60 rounds of
/// 320 keys, more than history holds) receives one snapshot, the newest report of
/// every key in id order, instead of 19,200 events (or the reset event), then live
/// events. From an id history still covers, the same in short.
#[tokio::test]
async fn a_resumer_after_a_minute_away_gets_one_snapshot() {
    let hub = Hub::builder().conflate_replay(true).build();
    let server = hub_server(hub.clone()).await;
    let keys = fleet(320);
    let mut seen = 0;
    let mut newest = BTreeMap::new();
    for second in 0..61 {
        for key in &keys {
            let id = hub
                .publish_keyed("positions", key, report(key, second))
                .unwrap()
                .id()
                .unwrap();
            newest.insert(key.clone(), id);
        }
        if second == 0 {
            seen = hub.last_id();
        }
        if second == 50 {
            // A keyless event meanwhile is replayed too.
            hub.publish("positions", Event::data("keyless")).unwrap();
        }
    }
    assert!(hub.stats("positions").unwrap().history < 19_200);
    let mut stream = connect(
        server.addr,
        "/events?topic=positions",
        Some(&seen.to_string()),
    )
    .await;
    let mut got = Vec::new();
    for n in 0..321 {
        let event = next(&mut stream, &format!("snapshot {n}")).await;
        got.push((event.event, event.data));
    }
    let keyless = got
        .iter()
        .position(|(_, data)| data == "keyless")
        .expect("the keyless event");
    assert_eq!(keyless, 0, "older than the newest report of every key");
    let expected: Vec<(String, String)> = keys
        .iter()
        .map(|key| ("position".to_owned(), data_of(&report(key, 60)).to_owned()))
        .collect();
    assert_eq!(got[1..], expected);
    let live = hub
        .publish_keyed("positions", "000", report("000", 61))
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(next(&mut stream, "live").await.id, live.to_string());
    assert_eq!(hub.stats("positions").unwrap().conflated, 1);

    // From within history: the newest of the keys that moved since.
    let mut resumed = hub.subscribe(
        ["positions"],
        Some(&LastEventId::new(newest["100"].to_string())),
    );
    let (events, _) = drain(&mut resumed);
    let mut expected: Vec<u64> = keys[101..].iter().map(|k| newest[k]).collect();
    expected.push(live);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
}

/// When the key index let go of what a resumer needs (past `conflate_keys`), it gets
/// what it would without `conflate_replay`: every event from history, or, when history
/// does not reach back either, the reset event. `conflate_fallbacks` counts both.
#[tokio::test]
async fn a_resumer_past_the_key_cap_gets_history_or_the_reset() {
    let hub = Hub::builder()
        .conflate_replay(true)
        .conflate_keys(10)
        .history_events(100)
        .build();
    let start = hub
        .publish("t", Event::data("start"))
        .unwrap()
        .id()
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            hub.publish_keyed("t", &n.to_string(), Event::data("x"))
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    let mut resumed = hub.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    let (events, _) = drain(&mut resumed);
    assert_eq!(
        events.iter().map(id_of).collect::<Vec<_>>(),
        ids,
        "every event from history"
    );
    // The 10 newest keys are still in short.
    let mut resumed = hub.subscribe(["t"], Some(&LastEventId::new(ids[9].to_string())));
    assert_eq!(
        drain(&mut resumed).0.iter().map(id_of).collect::<Vec<_>>(),
        ids[10..]
    );

    for n in 0..200 {
        hub.publish_keyed("t", &n.to_string(), Event::data("y"))
            .unwrap();
    }
    let mut resumed = hub.subscribe(["t"], Some(&LastEventId::new(start.to_string())));
    let (events, _) = drain(&mut resumed);
    assert_eq!(events.len(), 1);
    assert!(text(&events[0]).starts_with("event: stream-reset\ndata: evicted\n"));
    let stats = hub.stats("t").unwrap();
    assert_eq!(
        (stats.conflated, stats.conflate_fallbacks),
        (1, 2),
        "{stats:?}"
    );
}

/// The aircraft example's layout, one topic per aircraft (each keyed by its aircraft)
/// read on one subscription: with a live window of a few seconds per topic, a page 60 s
/// behind receives the newest report of every aircraft, 320 events in id order, and a
/// page that reconnects with `conflate_replay` the same.
#[tokio::test]
async fn one_topic_per_aircraft_conflates_the_same_way() {
    let hub = Hub::builder()
        .max_topics(320)
        .queue_events(5)
        .lag_policy(LagPolicy::Conflate)
        .conflate_replay(true)
        .build();
    let keys = fleet(320);
    let topics: Vec<String> = keys.iter().map(|k| format!("aircraft/{k}")).collect();
    let mut page = hub.subscribe(&topics, None);
    let mut seen = 0;
    let mut newest = BTreeMap::new();
    for second in 0..61 {
        for (topic, key) in topics.iter().zip(&keys) {
            let id = hub
                .publish_keyed(topic, key, report(key, second))
                .unwrap()
                .id()
                .unwrap();
            newest.insert(topic.clone(), id);
        }
        if second == 0 {
            seen = hub.last_id();
        }
    }
    let mut expected: Vec<u64> = newest.values().copied().collect();
    expected.sort_unstable();
    let (events, end) = drain(&mut page);
    assert_eq!(end, None);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
    assert!(
        events
            .iter()
            .zip(&keys)
            .all(|(e, k)| data_of(e) == data_of(&report(k, 60)))
    );

    let mut reconnected = hub.subscribe(&topics, Some(&LastEventId::new(seen.to_string())));
    let (events, _) = drain(&mut reconnected);
    assert_eq!(events.iter().map(id_of).collect::<Vec<_>>(), expected);
}

// ---- The figures of issue 24, point 6 ------------------------------------------------

/// What a client received to catch up: events and bytes of their frames.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Caught {
    events: usize,
    bytes: usize,
}

impl Caught {
    fn add(&mut self, event: &Event) {
        self.events += 1;
        self.bytes += event.as_bytes().len();
    }
}

/// A feed of `AIRCRAFT` keys on one topic, one report each per second, and a client
/// that stops reading for `seconds` after reading everything up to then; what it
/// receives, under `policy` (and `conflate_replay`, and `history` events of history),
/// before it holds the newest
/// report of every aircraft again: `(at once, over the next second)`. At once is what
/// the hub sends when it reads again (and, under `Disconnect`, on its reconnection with
/// its `Last-Event-ID`); over the next second, what it still needs to know where every
/// aircraft is (after a reset, a report of every aircraft).
fn behind(policy: LagPolicy, replay: bool, history: usize, seconds: u64) -> (Caught, Caught) {
    const AIRCRAFT: usize = 320;
    // The default live window (1024 events, 3.2 s of this feed).
    let hub = Hub::builder()
        .history_events(history)
        .lag_policy(policy)
        .conflate_replay(replay)
        .build();
    let keys = fleet(AIRCRAFT);
    let mut subscription = hub.subscribe(["positions"], None);
    for key in &keys {
        hub.publish_keyed("positions", key, report(key, 0)).unwrap();
    }
    let (events, _) = drain(&mut subscription);
    assert_eq!(events.len(), AIRCRAFT);
    let last = id_of(events.last().unwrap());
    for second in 1..=seconds {
        for key in &keys {
            hub.publish_keyed("positions", key, report(key, second))
                .unwrap();
        }
    }
    let mut now = Caught::default();
    let (events, end) = drain(&mut subscription);
    events.iter().for_each(|e| now.add(e));
    if let Some(SubscriptionError::Lagged { .. }) = end {
        let mut resumed = hub.subscribe(["positions"], Some(&LastEventId::new(last.to_string())));
        let (events, _) = drain(&mut resumed);
        events.iter().for_each(|e| now.add(e));
        subscription = resumed;
    }
    let reset = now.events == 1;
    let mut later = Caught::default();
    if reset {
        for key in &keys {
            hub.publish_keyed("positions", key, report(key, seconds + 1))
                .unwrap();
        }
        drain(&mut subscription).0.iter().for_each(|e| later.add(e));
    }
    (now, later)
}

/// Issue 24, point 6: 320 aircraft, one report each per second, on one topic; a client
/// 10 s and 60 s behind. Deterministic counts (a held subscription), printed as the
/// README's table; the assertions pin them.
#[test]
fn aircraft_figures() {
    // Two minutes of history (as the aircraft example keeps), or the default 4096
    // events (12.8 s of this feed).
    let two_minutes = 120 * 320;
    let cases = [
        (
            "Disconnect, 2 min of history",
            LagPolicy::Disconnect,
            false,
            two_minutes,
        ),
        (
            "Disconnect, default history",
            LagPolicy::Disconnect,
            false,
            4096,
        ),
        (
            "Disconnect + conflate_replay",
            LagPolicy::Disconnect,
            true,
            4096,
        ),
        ("SkipAhead", LagPolicy::SkipAhead, false, 4096),
        ("Conflate", LagPolicy::Conflate, false, 4096),
    ];
    println!("| policy | 10 s behind: events (bytes) | 60 s behind: events (bytes) |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for (name, policy, replay, history) in cases {
        let cell = |(now, later): (Caught, Caught)| {
            if later.events == 0 {
                format!("{} ({} B)", now.events, now.bytes)
            } else {
                format!(
                    "{} ({} B) + {} over the next second ({} B)",
                    now.events, now.bytes, later.events, later.bytes
                )
            }
        };
        let ten = behind(policy, replay, history, 10);
        let sixty = behind(policy, replay, history, 60);
        println!("| {name} | {} | {} |", cell(ten), cell(sixty));
        rows.push((ten, sixty));
    }
    let events = |c: (Caught, Caught)| (c.0.events, c.1.events);
    assert_eq!(events(rows[0].0), (3200, 0));
    assert_eq!(events(rows[0].1), (19_200, 0));
    assert_eq!(events(rows[1].0), (3200, 0));
    assert_eq!(
        events(rows[1].1),
        (1, 320),
        "history holds 12.8 s: the reset"
    );
    for row in [2, 4] {
        assert_eq!(events(rows[row].0), (320, 0));
        assert_eq!(events(rows[row].1), (320, 0));
    }
    assert_eq!(events(rows[3].0), (1, 320));
    assert_eq!(events(rows[3].1), (1, 320));
}
