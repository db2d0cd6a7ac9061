//! Issue 19, item 2: the hub is bounded by default, and nothing is lost silently when it
//! evicts. With the default budget (64 MiB), topics nobody reads go first, least
//! recently used first, a read topic never goes, read topics keep their live window,
//! and a subscriber resuming into what was evicted (or into a topic dropped and made
//! again) receives the reset event. Over real loopback connections where the client
//! matters; in a binary of its own, since each test publishes about 100 MiB.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use support::*;
use tower::ServiceBuilder;
use tower_sse::{Event, Hub, LastEventId, SseLayer};

async fn hub_server(hub: Hub) -> TestServer {
    serve(ServiceBuilder::new().layer(SseLayer::new()).service(hub)).await
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

/// Issue 19, item 2: with the default budget (64 MiB), a topic someone reads is never
/// evicted, though it is the least recently published; the topics nobody reads are,
/// oldest first, once the hub holds too much.
#[tokio::test]
async fn a_read_topic_is_never_evicted_while_unread_ones_are() {
    let hub = Hub::new();
    let server = hub_server(hub.clone()).await;
    let mut watched = connect(server.addr, "/events?topic=watched", None).await;
    wait_for("the subscriber", || hub.stats("watched").is_some()).await;
    let first = hub
        .publish("watched", Event::data("first"))
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(
        within("the next event of watched", watched.next())
            .await
            .unwrap()
            .id,
        first.to_string()
    );

    // About 100 MiB of 1 KiB events on 100,000 topics nobody reads.
    let payload = "u".repeat(1000);
    for n in 0..100_000 {
        hub.publish(&format!("unread-{n}"), Event::data(&payload))
            .unwrap();
    }
    assert!(
        hub.stats("unread-0").is_none(),
        "the oldest unread topic was evicted"
    );
    assert!(hub.stats("unread-99999").is_some(), "the newest is kept");
    let stats = hub.stats("watched").expect("the read topic stays");
    assert_eq!((stats.subscribers, stats.history), (1, 1), "{stats:?}");

    // Its subscriber reads on, and a resumer replays its history.
    let next = hub
        .publish("watched", Event::data("next"))
        .unwrap()
        .id()
        .unwrap();
    assert_eq!(
        within("the next event of watched", watched.next())
            .await
            .unwrap()
            .id,
        next.to_string()
    );
    let mut resumed = connect(
        server.addr,
        "/events?topic=watched",
        Some(&(first - 1).to_string()),
    )
    .await;
    assert_eq!(
        within("the next event of resumed", resumed.next())
            .await
            .unwrap()
            .data,
        "first"
    );
    assert_eq!(
        within("the next event of resumed", resumed.next())
            .await
            .unwrap()
            .data,
        "next"
    );
}

/// Issue 19, item 2: no silent loss after eviction. A client that resumes into a topic
/// the budget evicted (and that was published to again since) receives the reset
/// event (`evicted`), then live events; it does not silently start after the events it
/// missed.
#[tokio::test]
async fn a_resumer_into_an_evicted_topic_gets_the_reset_event() {
    let hub = Hub::new();
    let server = hub_server(hub.clone()).await;
    let seen = hub.publish("t", Event::data("seen")).unwrap().id().unwrap();
    hub.publish("t", Event::data("missed")).unwrap();
    let payload = "u".repeat(1000);
    for n in 0..100_000 {
        hub.publish(&format!("unread-{n}"), Event::data(&payload))
            .unwrap();
    }
    assert!(hub.stats("t").is_none(), "`t` was evicted");
    // Made again by a new publish: it knows its older events are gone.
    hub.publish("t", Event::data("after")).unwrap();

    let newest = hub.last_id();
    let mut stream = connect(server.addr, "/events?topic=t", Some(&seen.to_string())).await;
    let reset = within("the next event of stream", stream.next())
        .await
        .unwrap();
    assert_eq!(
        (reset.event.as_str(), reset.data.as_str(), reset.id),
        ("stream-reset", "evicted", newest.to_string())
    );
    let live = hub.publish("t", Event::data("live")).unwrap().id().unwrap();
    let next = within("the next event of stream", stream.next())
        .await
        .unwrap();
    assert_eq!((next.data.as_str(), next.id), ("live", live.to_string()));
}

/// Issue 19, item 2: a topic dropped because its history aged out, then published to
/// again, still tells a resumer from before that events are gone (it used to start
/// afresh and skip them silently).
#[tokio::test(start_paused = true)]
async fn a_topic_dropped_and_made_again_tells_resumers_what_they_missed() {
    let hub = Hub::builder().history_age(Duration::from_secs(60)).build();
    let seen = hub.publish("t", Event::data("seen")).unwrap().id().unwrap();
    hub.publish("t", Event::data("missed")).unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(hub.all_stats().is_empty(), "`t` aged out and was dropped");
    hub.publish("t", Event::data("after")).unwrap();

    let mut resumed = hub.subscribe(["t"], Some(&LastEventId::new(seen.to_string())));
    let first = within("the next event of resumed", resumed.next())
        .await
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(first.as_bytes()).unwrap();
    assert!(
        text.starts_with("event: stream-reset\ndata: evicted\n"),
        "{text}"
    );
}

/// Issue 19, item 2: when only read topics hold the hub's history and it is over its
/// budget, their history is taken down to their live window, never below: live
/// subscribers receive everything, and a resumer from before gets the reset event.
#[tokio::test]
async fn over_budget_read_topics_keep_their_live_window_and_resumers_are_told() {
    const TOPICS: usize = 24;
    const PER_TOPIC: usize = 4096;
    // 24 topics of 4096 events of 1 KiB: about 100 MiB of history, all of it read.
    let hub = Hub::new();
    let names: Vec<String> = (0..TOPICS).map(|t| format!("t{t}")).collect();
    let mut subscriptions: Vec<_> = names.iter().map(|n| hub.subscribe([n], None)).collect();
    let payload = "r".repeat(1000);
    let mut first = 0;
    for n in 0..PER_TOPIC {
        for (topic, subscription) in names.iter().zip(&mut subscriptions) {
            let id = hub
                .publish(topic, Event::data(&payload))
                .unwrap()
                .id()
                .unwrap();
            if first == 0 {
                first = id;
            }
            let event = within("the next event of subscription", subscription.next())
                .await
                .unwrap()
                .expect("no lag");
            assert_eq!(id_of(&event), id, "{topic} event {n}");
        }
    }
    // Within the budget (64 MiB, counting more than the frames alone), and every topic
    // still holds at least its live window (1024 events).
    let histories: Vec<usize> = hub.all_stats().iter().map(|s| s.history).collect();
    let held: usize = histories.iter().sum();
    assert!(held * payload.len() < 64 << 20, "{histories:?}");
    assert!(histories.iter().all(|h| *h >= 1024), "{histories:?}");
    // A resumer from the first event: some of what followed is gone.
    let mut resumed = hub.subscribe(&names, Some(&LastEventId::new(first.to_string())));
    let reset = within("the next event of resumed", resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        reset
            .as_bytes()
            .starts_with(b"event: stream-reset\ndata: evicted\n"),
        "{reset:?}"
    );
}
