//! The hub over real loopback connections: topics, replay under concurrent publishers,
//! the gap signal, slow subscribers, counts, and one allocation shared by all.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use support::*;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::hub::{LagPolicy, SubscriptionError};
use tower_sse::{EndReason, Event, Hub, LastEventId, SseLayer};

/// A server whose `/events?topic=..` subscribes to `hub`, resuming from Last-Event-ID:
/// the hub itself is the service.
async fn hub_server(hub: Hub, layer: SseLayer) -> TestServer {
    serve(ServiceBuilder::new().layer(layer).service(hub)).await
}

async fn connect(
    addr: SocketAddr,
    uri: &str,
    last_event_id: Option<&str>,
) -> impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    let mut request = get(uri);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = within(&format!("the response to {uri}"), async {
        h1_connect(addr)
            .await
            .send(request.body(empty()).unwrap())
            .await
    })
    .await;
    assert_eq!(response.status(), 200);
    events(response)
}

/// The next event of `stream`; fails with `what` if none comes within the deadline, or
/// if the stream ends.
async fn next_of(
    stream: &mut (impl futures_util::Stream<Item = eventsource_stream::Event> + Unpin),
    what: &str,
) -> eventsource_stream::Event {
    within(what, stream.next())
        .await
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}

/// The next event of `subscription`; fails with `what` if none comes within the
/// deadline, or if the subscription ends.
async fn next_in(
    subscription: &mut tower_sse::Subscription,
    what: &str,
) -> Result<Event, SubscriptionError> {
    within(what, subscription.next())
        .await
        .unwrap_or_else(|| panic!("the subscription ended before {what}"))
}

fn typed(event_type: &str, data: &str) -> Event {
    Event::builder()
        .event(event_type)
        .data(data)
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_connection_reads_several_topics_in_publish_order() {
    let hub = Hub::new();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    let mut stream = connect(server.addr, "/events?topic=flights&topic=weather", None).await;
    // Wait until the subscription exists, so nothing published below is before it.
    wait_for("the subscriber on weather", || {
        hub.stats("weather").is_some_and(|s| s.subscribers > 0)
    })
    .await;
    let ids = [
        hub.publish("flights", typed("position", "TG1"))
            .unwrap()
            .id(),
        hub.publish("sports", typed("score", "not subscribed"))
            .unwrap()
            .id(),
        hub.publish("weather", typed("forecast", "rain"))
            .unwrap()
            .id(),
        hub.publish("flights", typed("position", "TG2"))
            .unwrap()
            .id(),
    ];
    let mut got = Vec::new();
    for n in 0..3 {
        let event = next_of(&mut stream, &format!("event {n} of 3")).await;
        got.push((event.event, event.data, event.id));
    }
    let id = |i: usize| ids[i].unwrap().to_string();
    assert_eq!(
        got,
        [
            ("position".into(), "TG1".into(), id(0)),
            ("forecast".into(), "rain".into(), id(2)),
            ("position".into(), "TG2".into(), id(3)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_replay_exactly_what_was_missed_under_concurrent_publishers() {
    const PUBLISHERS: u64 = 4;
    const PER_PUBLISHER: u64 = 2_500;
    let hub = Hub::builder().history_events(20_000).build();
    let server = hub_server(hub.clone(), SseLayer::new()).await;

    let mut stream = connect(server.addr, "/events?topic=a&topic=b", None).await;
    wait_for("the subscriber on b", || {
        hub.stats("b").is_some_and(|s| s.subscribers > 0)
    })
    .await;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for n in 0..PER_PUBLISHER {
                    let topic = if n % 2 == 0 { "a" } else { "b" };
                    let event = typed(topic, &format!("{p}-{n}"));
                    ids.push(hub.publish(topic, event).unwrap().id().unwrap());
                    if n % 100 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                ids
            })
        })
        .collect();

    // Read in bursts, dropping the connection after each and resuming from the last id.
    let total = (PUBLISHERS * PER_PUBLISHER) as usize;
    let mut received: Vec<u64> = Vec::new();
    let mut datas = Vec::new();
    let mut reconnects = 0;
    while received.len() < total {
        let burst = 700 + reconnects * 37;
        for _ in 0..burst {
            let event = match timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => panic!("the stream ended after {} events", received.len()),
                Err(_) => panic!("stalled after {} events", received.len()),
            };
            received.push(event.id.parse().unwrap());
            datas.push(event.data);
            if received.len() == total {
                break;
            }
        }
        if received.len() < total {
            reconnects += 1;
            let last = received.last().unwrap().to_string();
            stream = connect(server.addr, "/events?topic=b&topic=a", Some(&last)).await;
        }
    }
    let mut published: Vec<u64> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    published.sort_unstable();

    assert!(reconnects >= 5, "{reconnects} reconnects");
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in id order, no duplicate"
    );
    assert_eq!(received, published, "no gap");
    // Each publisher's own events arrive in the order it published them.
    for p in 0..PUBLISHERS {
        let mine: Vec<u64> = datas
            .iter()
            .filter_map(|d| d.strip_prefix(&format!("{p}-")))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..PER_PUBLISHER).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn the_reset_event_comes_first_for_an_evicted_unknown_or_malformed_id() {
    let hub = Hub::builder().history_events(10).build();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    let first = hub.publish("t", Event::data("0")).unwrap().id().unwrap();
    for n in 1..50 {
        hub.publish("t", Event::data(&n.to_string())).unwrap();
    }
    let cases = [
        (first.to_string(), "evicted"),
        ((hub.last_id() + 1000).to_string(), "unknown"),
        ("17".to_string(), "unknown"),
        ("not-a-number".to_string(), "malformed"),
        ("-5".to_string(), "malformed"),
    ];
    for (last_event_id, reason) in cases {
        let newest = hub.last_id();
        let mut stream = connect(server.addr, "/events?topic=t", Some(&last_event_id)).await;
        let reset = next_of(&mut stream, &format!("the reset for {last_event_id}")).await;
        assert_eq!(reset.event, "stream-reset", "{last_event_id}");
        assert_eq!(reset.data, reason);
        assert_eq!(
            reset.id,
            newest.to_string(),
            "resumes from the newest event"
        );
        // Then live events, nothing older.
        let live = hub.publish("t", Event::data("live")).unwrap().id().unwrap();
        let next = next_of(&mut stream, "the live event after the reset").await;
        assert_eq!((next.data.as_str(), next.id), ("live", live.to_string()));
    }

    // An id history still covers replays without a reset.
    let covered = hub.last_id() - 3;
    let mut stream = connect(server.addr, "/events?topic=t", Some(&covered.to_string())).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let event = next_of(&mut stream, &format!("replayed event {n} of 3")).await;
        ids.push(event.id.parse::<u64>().unwrap());
    }
    assert_eq!(ids, [covered + 1, covered + 2, covered + 3]);
}

#[tokio::test]
async fn the_reset_event_type_is_configurable() {
    let hub = Hub::builder().reset_event_type("resync").build();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    let mut stream = connect(server.addr, "/events?topic=t", Some("garbage")).await;
    assert_eq!(next_of(&mut stream, "the reset").await.event, "resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_catches_up_from_history() {
    const EVENTS: usize = 10_000;
    let hub = Hub::builder()
        .history_events(EVENTS)
        .queue_events(500)
        .build();
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let layer = SseLayer::new().on_end(move |end| {
        let _ = tx.send((end.reason, end.error.as_ref().map(|e| e.to_string())));
    });
    let server = hub_server(hub.clone(), layer).await;

    let healthy_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let healthy = tokio::spawn({
        let addr = server.addr;
        let count = healthy_count.clone();
        async move {
            let mut stream = connect(addr, "/events?topic=t", None).await;
            let mut ids = Vec::new();
            while ids.len() < EVENTS {
                let what = format!("event {} of the healthy client", ids.len());
                ids.push(next_of(&mut stream, &what).await.id.parse::<u64>().unwrap());
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ids
        }
    });
    // The stalled client: its response is open, its body never read.
    let stalled_response = within("the stalled client's response", async {
        h1_connect(server.addr)
            .await
            .send(get("/events?topic=t").body(empty()).unwrap())
            .await
    })
    .await;
    wait_for("both subscribers", || {
        hub.stats("t").is_some_and(|s| s.subscribers >= 2)
    })
    .await;

    let payload = "x".repeat(1000);
    let mut published = Vec::new();
    for n in 0..EVENTS {
        let event = Event::data(&format!("{n} {payload}"));
        published.push(hub.publish("t", event).unwrap().id().unwrap());
        // Publish as fast as the healthy client reads, never more than 200 ahead of it
        // (its queue holds 500); the stalled one falls behind without bound.
        let read = || healthy_count.load(std::sync::atomic::Ordering::Relaxed);
        if n - read().min(n) > 200 {
            wait_for("the healthy client to read", || n - read().min(n) <= 200).await;
        }
    }
    // Publishing never waited for the stalled subscriber: it finds out it lags when it
    // reads again.
    assert_eq!(hub.stats("t").unwrap().history, EVENTS);

    // The healthy subscriber received everything, in order.
    let ids = within("the healthy client's last event", healthy)
        .await
        .unwrap();
    assert_eq!(ids, published);

    // The stalled client reads again: what was already written, then a clean end.
    let mut stalled: Vec<u64> = within(
        "the stalled client's stream to end",
        events(stalled_response)
            .map(|e| e.id.parse::<u64>().unwrap())
            .collect(),
    )
    .await;
    assert!(stalled.len() < EVENTS);
    // Two streams ended: the healthy one when its client left, the stalled one lagged.
    let mut ends = [
        within("the first end report", reports.recv())
            .await
            .unwrap(),
        within("the second end report", reports.recv())
            .await
            .unwrap(),
    ];
    ends.sort_by_key(|(reason, _)| *reason == EndReason::Error);
    assert_eq!(ends[0], (EndReason::ClientGone, None));
    assert_eq!(ends[1].0, EndReason::Error);
    let lagged = ends[1].1.as_deref().unwrap();
    assert!(
        lagged.starts_with("hub subscriber fell too far behind ("),
        "{lagged}"
    );
    let stats = hub.stats("t").unwrap();
    assert_eq!(
        stats.lagged, 1,
        "the stalled subscriber was cut off: {stats:?}"
    );
    assert!(stats.dropped > 0);

    // It reconnects with its last id and catches up from history: nothing lost.
    let last = stalled.last().map(|id| id.to_string());
    let mut resumed = connect(server.addr, "/events?topic=t", last.as_deref()).await;
    while stalled.len() < EVENTS {
        let what = format!("event {} of the resumed client", stalled.len());
        stalled.push(next_of(&mut resumed, &what).await.id.parse().unwrap());
    }
    assert_eq!(stalled, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_by_history_while_a_client_stalls() {
    let hub = Hub::builder()
        .history_events(1_000)
        .history_bytes(256 * 1024)
        .queue_events(200)
        .build();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    let mut stalled = connect(server.addr, "/events?topic=t", None).await;
    wait_for("the subscriber", || {
        hub.stats("t").is_some_and(|s| s.subscribers >= 1)
    })
    .await;
    hub.publish("t", Event::data("first")).unwrap();
    let mut last = next_of(&mut stalled, "the first event").await.id;
    let payload = "y".repeat(1000);
    for n in 0..10_000 {
        hub.publish("t", Event::data(&format!("{n} {payload}")))
            .unwrap();
        let history = hub.stats("t").unwrap().history;
        assert!(history <= 262, "history holds {history} events of ~1 KiB");
    }
    // Reading again, it finds it lagged: its stream ends.
    within("the lagged stream to end", async {
        while let Some(event) = stalled.next().await {
            last = event.id;
        }
    })
    .await;
    wait_for("the lagged subscriber to leave", || {
        hub.stats("t").unwrap().subscribers == 0
    })
    .await;
    assert_eq!(hub.stats("t").unwrap().lagged, 1);

    // Coming back after history moved on: the gap signal, then live events.
    let mut resumed = connect(server.addr, "/events?topic=t", Some(&last)).await;
    let reset = next_of(&mut resumed, "the reset").await;
    assert_eq!(
        (reset.event.as_str(), reset.data.as_str()),
        ("stream-reset", "evicted")
    );
}

#[tokio::test]
async fn skip_ahead_sends_the_reset_event_then_goes_on_live() {
    let hub = Hub::builder()
        .queue_events(10)
        .lag_policy(LagPolicy::SkipAhead)
        .build();
    let mut subscription = hub.subscribe(["t"], None);
    for n in 0..50 {
        hub.publish("t", Event::data(&n.to_string())).unwrap();
    }
    let reset = next_in(&mut subscription, "the reset").await.unwrap();
    assert!(
        reset
            .as_bytes()
            .starts_with(b"event: stream-reset\ndata: lagged\n")
    );
    let live = hub
        .publish("t", Event::data("after"))
        .unwrap()
        .id()
        .unwrap();
    let next = next_in(&mut subscription, "the live event").await.unwrap();
    assert_eq!(
        next.as_bytes().as_ref(),
        format!("data: after\nid: {live}\n\n").as_bytes()
    );
    let stats = hub.stats("t").unwrap();
    assert_eq!((stats.lagged, stats.subscribers), (1, 1));
}

#[tokio::test]
async fn subscriber_counts_return_to_zero_when_clients_leave() {
    let hub = Hub::new();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    let mut clients = Vec::new();
    for n in 0..20 {
        let client = within(&format!("the response to client {n}"), async {
            let mut h1 = h1_connect(server.addr).await;
            let response = h1
                .send(get("/events?topic=a&topic=b").body(empty()).unwrap())
                .await;
            (h1, response)
        })
        .await;
        clients.push(client);
    }
    wait_for("20 subscribers on b", || {
        hub.stats("b").is_some_and(|s| s.subscribers >= 20)
    })
    .await;
    assert_eq!(hub.stats("a").unwrap().subscribers, 20);
    for (h1, response) in clients {
        drop(response);
        h1.close();
    }
    wait_for("every subscriber removed", || {
        hub.all_stats().iter().all(|s| s.subscribers == 0)
    })
    .await;
    // Topics that never had an event are forgotten with their last subscriber.
    assert!(hub.stats("a").is_none());
}

#[tokio::test]
async fn every_subscriber_receives_the_very_same_allocation() {
    let hub = Hub::new();
    let mut subscriptions: Vec<_> = (0..10).map(|_| hub.subscribe(["t"], None)).collect();
    hub.publish("t", Event::data("shared")).unwrap();
    let mut pointers = Vec::new();
    for (n, subscription) in subscriptions.iter_mut().enumerate() {
        let event = next_in(subscription, &format!("the event of subscriber {n}"))
            .await
            .unwrap();
        pointers.push(event.as_bytes().as_ptr());
    }
    assert!(pointers.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(hub.stats("t").unwrap().delivered, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_on_one_subscription_stay_in_order_under_concurrent_publishers() {
    const TOPICS: usize = 64;
    const PUBLISHERS: usize = 4;
    const PER_PUBLISHER: usize = 5_000;
    let hub = Hub::builder()
        .history_events(PUBLISHERS * PER_PUBLISHER)
        .max_topics(TOPICS)
        .build();
    let names: Vec<String> = (0..TOPICS).map(|t| format!("topic-{t}")).collect();
    let odd: Vec<&String> = names.iter().skip(1).step_by(2).collect();
    let mut all = hub.subscribe(&names, None);
    let mut some = hub.subscribe(&odd, None);

    let topic_of = |n: usize, p: usize| (n * 7 + p * 13) % TOPICS;
    let publishers = spawn_publishers(&hub, &names, PUBLISHERS, PER_PUBLISHER, topic_of);
    let published = joined_in_id_order(publishers);
    let expected_all: Vec<u64> = published.iter().map(|p| p.0).collect();
    let expected_odd: Vec<u64> = published
        .iter()
        .filter(|p| p.1 % 2 == 1)
        .map(|p| p.0)
        .collect();

    let got_all = read_ids(&mut all, expected_all.len(), "on all topics").await;
    let got_odd = read_ids(&mut some, expected_odd.len(), "on the odd topics").await;
    assert_eq!(got_all, expected_all);
    assert_eq!(got_odd, expected_odd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_read_live_while_publishers_run() {
    const TOPICS: usize = 32;
    let hub = Hub::builder().history_events(100_000).build();
    let names: Vec<String> = (0..TOPICS).map(|t| format!("t{t}")).collect();
    let mut subscription = hub.subscribe(&names, None);
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (hub, names) = (hub.clone(), names.clone());
            std::thread::spawn(move || {
                for n in 0..3_000usize {
                    hub.publish(&names[(n * 5 + p) % TOPICS], Event::data("y"))
                        .unwrap();
                    if n % 50 == 0 {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    // Read concurrently with the publishers: strictly increasing ids, none missing.
    let mut last = 0;
    let mut count = 0;
    while count < 9_000 {
        let event = timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("no lost wake-up")
            .unwrap()
            .unwrap();
        let text = String::from_utf8(event.as_bytes().to_vec()).unwrap();
        let id: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
        count += 1;
    }
    for p in publishers {
        p.join().unwrap();
    }
    assert_eq!(
        hub.stats("t0").unwrap().delivered,
        hub.stats("t0").unwrap().published
    );
}

/// Issue 20: a subscription of hundreds of topics finds the flagged ones a word of 64 at
/// a time (`MemberSet`), and looks for taken registrations only while a publish has not
/// flagged them yet. Read while three publishers run over 200 topics (four words, the
/// last one partial): every event once, in id order, and each subscription on a slice
/// of the topics gets exactly its slice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_topics_on_one_subscription_read_every_event_in_order() {
    const TOPICS: usize = 200;
    const PER_PUBLISHER: usize = 3_000;
    let hub = Hub::builder().history_events(10_000).build();
    let names: Vec<String> = (0..TOPICS).map(|t| format!("t{t}")).collect();
    // Topics 60..140 straddle the first three words.
    let middle = &names[60..140];
    let mut all = hub.subscribe(&names, None);
    let mut some = hub.subscribe(middle, None);
    let topic_of = |n: usize, p: usize| (n * 67 + p * 31) % TOPICS;
    let publishers = spawn_publishers(&hub, &names, 3, PER_PUBLISHER, topic_of);
    // Read while they publish.
    let got_all = read_ids(&mut all, 3 * PER_PUBLISHER, "of all 200 topics").await;
    let published = joined_in_id_order(publishers);
    let expected_all: Vec<u64> = published.iter().map(|p| p.0).collect();
    assert_eq!(got_all, expected_all);
    let expected_some: Vec<u64> = published
        .iter()
        .filter(|p| (60..140).contains(&p.1))
        .map(|p| p.0)
        .collect();
    let got_some = read_ids(&mut some, expected_some.len(), "of topics 60 to 139").await;
    assert_eq!(got_some, expected_some);
}

/// Issue 12: a topic nobody reads whose history aged out past `history_age` is dropped
/// (checked at most once per `history_age`, on the hub's next publish, subscribe or
/// stats); one with a subscriber, or with history still young, stays.
#[tokio::test(start_paused = true)]
async fn idle_topics_are_dropped_once_their_history_aged_out() {
    let age = Duration::from_secs(60);
    let hub = Hub::builder().history_age(age).build();
    hub.publish("old", Event::data("x")).unwrap();
    let mut kept = hub.subscribe(["kept"], None);
    hub.publish("kept", Event::data("x")).unwrap();
    next_in(&mut kept, "the event on kept").await.unwrap();
    {
        let _left = hub.subscribe(["left"], None);
        hub.publish("left", Event::data("x")).unwrap();
    }
    // History that is still young keeps a topic nobody reads: a client may resume.
    assert!(hub.stats("left").is_some());

    tokio::time::advance(Duration::from_secs(30)).await;
    hub.publish("young", Event::data("x")).unwrap();
    assert!(hub.stats("old").is_some());

    tokio::time::advance(Duration::from_secs(31)).await;
    let names =
        |hub: &Hub| -> Vec<String> { hub.all_stats().into_iter().map(|s| s.topic).collect() };
    assert_eq!(names(&hub), ["kept", "young"]);
    assert_eq!(hub.stats("kept").unwrap().subscribers, 1);

    // The subscriber on `kept` still reads it; `old` starts afresh when published again.
    let live = hub
        .publish("kept", Event::data("live"))
        .unwrap()
        .id()
        .unwrap();
    let event = next_in(&mut kept, "the live event on kept").await.unwrap();
    let text = String::from_utf8(event.as_bytes().to_vec()).unwrap();
    assert!(text.ends_with(&format!("id: {live}\n\n")), "{text}");
    hub.publish("old", Event::data("again")).unwrap();
    assert_eq!(hub.stats("old").unwrap().history, 1);

    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(names(&hub), ["kept"]);
}

/// Ids across topics stay in order for a subscription reading while publishers run,
/// though publishers wake subscribers only after releasing their locks: many short
/// rounds, so that the moment between a publish moving the watermark and setting its
/// flags is hit often.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_across_topics_stay_in_order_while_wake_ups_lag_behind_the_watermark() {
    const TOPICS: usize = 8;
    for round in 0..20 {
        let hub = Hub::builder().history_events(10_000).build();
        let names: Vec<String> = (0..TOPICS).map(|t| format!("t{t}")).collect();
        let mut subscription = hub.subscribe(&names, None);
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                let (hub, names) = (hub.clone(), names.clone());
                std::thread::spawn(move || {
                    for n in 0..500usize {
                        hub.publish(&names[(n + p) % TOPICS], Event::data("z"))
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut last = 0;
        for _ in 0..2_000 {
            let event = timeout(Duration::from_secs(10), subscription.next())
                .await
                .expect("no lost wake-up")
                .unwrap()
                .unwrap();
            let text = std::str::from_utf8(event.as_bytes()).unwrap();
            let id: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap()
                .parse()
                .unwrap();
            assert!(id > last, "round {round}: {id} after {last}");
            last = id;
        }
        for p in publishers {
            p.join().unwrap();
        }
    }
}

/// Starts `publishers` threads; the `p`-th publishes `per_publisher` events, its `n`-th
/// on topic `topic_of(n, p)` of `names`, and gives the `(id, topic)` of each.
fn spawn_publishers(
    hub: &Hub,
    names: &[String],
    publishers: usize,
    per_publisher: usize,
    topic_of: fn(usize, usize) -> usize,
) -> Vec<std::thread::JoinHandle<Vec<(u64, usize)>>> {
    (0..publishers)
        .map(|p| {
            let (hub, names) = (hub.clone(), names.to_vec());
            std::thread::spawn(move || {
                (0..per_publisher)
                    .map(|n| {
                        let topic = topic_of(n, p);
                        let published = hub.publish(&names[topic], Event::data("x")).unwrap();
                        (published.id().unwrap(), topic)
                    })
                    .collect()
            })
        })
        .collect()
}

/// Every publisher's `(id, topic)` pairs, in id order.
fn joined_in_id_order(
    publishers: Vec<std::thread::JoinHandle<Vec<(u64, usize)>>>,
) -> Vec<(u64, usize)> {
    let mut published: Vec<_> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    published.sort_unstable();
    published
}

/// The ids of the next `count` events of `subscription`; fails naming the event (`what`
/// says of which topics) if one does not come.
async fn read_ids(
    subscription: &mut tower_sse::Subscription,
    count: usize,
    what: &str,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let event = format!("event {} {what}", ids.len());
        ids.push(id_of(&next_in(subscription, &event).await.unwrap()));
    }
    ids
}

/// The id of an event as the hub encoded it.
fn id_of(event: &Event) -> u64 {
    std::str::from_utf8(event.as_bytes())
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id line")
        .parse()
        .unwrap()
}

/// Issue 19, item 3: history is what a resumer can replay, not the live queue. With no
/// history, a history of one event, or a history of 64 bytes, a client that keeps up
/// (over a real connection) receives all 100 events, published in pairs, and no reset.
#[tokio::test]
async fn a_live_subscriber_that_keeps_up_receives_every_event_whatever_history_keeps() {
    let cases = [
        (
            "history_events(0)",
            Hub::builder().history_events(0).build(),
        ),
        (
            "history_events(1)",
            Hub::builder().history_events(1).build(),
        ),
        (
            "history_bytes(64)",
            Hub::builder().history_bytes(64).build(),
        ),
    ];
    for (case, hub) in cases {
        let server = hub_server(hub.clone(), SseLayer::new()).await;
        let mut stream = connect(server.addr, "/events?topic=t", None).await;
        wait_for("the subscriber", || {
            hub.stats("t").is_some_and(|s| s.subscribers == 1)
        })
        .await;
        let mut published = Vec::new();
        let mut received = Vec::new();
        for pair in 0..50 {
            for n in [2 * pair, 2 * pair + 1] {
                let event = Event::data(&format!("{n} {}", "p".repeat(60)));
                published.push(hub.publish("t", event).unwrap().id().unwrap().to_string());
            }
            // It keeps up: reads the pair before the next one comes.
            for _ in 0..2 {
                let event = timeout(Duration::from_secs(10), stream.next())
                    .await
                    .unwrap_or_else(|_| panic!("{case}: stalled after {}", received.len()))
                    .unwrap_or_else(|| panic!("{case}: ended after {}", received.len()));
                assert_eq!(event.event, "message", "{case}: {event:?}");
                received.push(event.id);
            }
        }
        assert_eq!(received, published, "{case}");
        let stats = hub.stats("t").unwrap();
        assert_eq!((stats.lagged, stats.dropped), (0, 0), "{case}: {stats:?}");
    }
}

/// Issue 19, item 3: the live window (`queue_events`, `queue_bytes`) alone decides lag.
/// Without history, a subscriber 10 events behind with `queue_events(10)` still reads
/// them all; one 11 behind lags; an event larger than `queue_bytes` still reaches a
/// subscriber that has nothing else to read.
#[tokio::test]
async fn lag_is_decided_by_the_live_window_alone() {
    let hub = Hub::builder()
        .history_events(0)
        .queue_events(10)
        .queue_bytes(1024)
        .build();
    let mut behind = hub.subscribe(["t"], None);
    let mut lagging = hub.subscribe(["t"], None);
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(
            hub.publish("t", Event::data(&n.to_string()))
                .unwrap()
                .id()
                .unwrap(),
        );
    }
    for id in &ids {
        let event = next_in(&mut behind, &format!("event {id}"))
            .await
            .expect("within its queue");
        assert_eq!(id_of(&event), *id);
    }
    ids.push(hub.publish("t", Event::data("10")).unwrap().id().unwrap());
    let event = next_in(&mut behind, "the eleventh event")
        .await
        .expect("within its queue");
    assert_eq!(id_of(&event), ids[10]);
    // The other one read nothing: 11 behind, more than its queue.
    let lagged = next_in(&mut lagging, "the lag").await.unwrap_err();
    assert_eq!(lagged, SubscriptionError::Lagged { skipped: 11 });

    // One event of 4 KiB, above `queue_bytes`: the newest event is always within it.
    let big = hub
        .publish("t", Event::data(&"b".repeat(4096)))
        .unwrap()
        .id()
        .unwrap();
    let event = next_in(&mut behind, "the event above queue_bytes")
        .await
        .expect("the newest event is never a lag");
    assert_eq!(id_of(&event), big);
    assert_eq!(hub.stats("t").unwrap().history, 0, "no replay wanted");

    // What only the live window holds is not replayed: a resumer is told it is gone.
    let mut resumer = hub.subscribe(["t"], Some(&LastEventId::new(ids[5].to_string())));
    let reset = next_in(&mut resumer, "the reset").await.unwrap();
    assert!(
        reset
            .as_bytes()
            .starts_with(b"event: stream-reset\ndata: evicted\n"),
        "{reset:?}"
    );

    // `queue_events(0)` is taken as 1: a subscriber that reads each event still gets it.
    let hub = Hub::builder().queue_events(0).build();
    let mut subscription = hub.subscribe(["t"], None);
    for n in 0..10 {
        let id = hub
            .publish("t", Event::data(&n.to_string()))
            .unwrap()
            .id()
            .unwrap();
        let event = next_in(&mut subscription, &format!("event {n}"))
            .await
            .expect("one event is never a lag");
        assert_eq!(id_of(&event), id);
    }
}

/// Issue 19, item 4: an empty topic name is not a topic. `?topic=` is refused (400);
/// publishing on "" fails; `Hub::subscribe` ignores it.
#[tokio::test]
async fn an_empty_topic_name_is_not_a_topic() {
    let hub = Hub::new();
    let server = hub_server(hub.clone(), SseLayer::new()).await;
    for uri in ["/events?topic=", "/events?topic=a&topic="] {
        let response = within(&format!("the response to {uri}"), async {
            h1_connect(server.addr)
                .await
                .send(get(uri).body(empty()).unwrap())
                .await
        })
        .await;
        assert_eq!(response.status(), 400, "{uri}");
    }
    assert!(hub.publish("", Event::data("x")).is_err());
    assert!(hub.stats("").is_none());
    let subscription = hub.subscribe(["", "a", ""], None);
    assert_eq!(subscription.topics().collect::<Vec<_>>(), ["a"]);
    assert!(hub.subscribe([""], None).topics().next().is_none());
    assert!(hub.stats("").is_none());
}
