//! Issue 19: when Redis loses data (a restart without persistence, `FLUSHALL`), the
//! hub notices and passes nothing wrong on: ids never repeat one given before, every
//! event acknowledged after the loss reaches live, new and resuming subscribers, live
//! subscribers get one `stream-reset` (data `lost`), resumers from before the loss get
//! it too, and each instance warns once. And a topic no longer published to expires
//! from Redis without a resumer silently missing its events. Two instances (hubs with
//! their own servers) on one real `redis-server` on a free loopback port.

#![cfg(feature = "redis")]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use eventsource_stream::Event as Parsed;
use futures_util::{Stream, StreamExt};
use support::redis::RedisServer;
use support::*;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::hub::RedisStorage;
use tower_sse::{Event, Hub, SseLayer};

/// Hang guard of every wait; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(30);

fn redis_hub(storage: RedisStorage) -> Hub {
    Hub::builder().redis(storage).build()
}

fn storage(url: &str, prefix: &str) -> RedisStorage {
    RedisStorage::new(url).unwrap().prefix(prefix)
}

async fn instance(hub: &Hub) -> TestServer {
    let layer = SseLayer::new().heartbeat(Duration::from_millis(100));
    serve(ServiceBuilder::new().layer(layer).service(hub.clone())).await
}

async fn connect(
    addr: SocketAddr,
    uri: &str,
    last_event_id: Option<u64>,
) -> impl Stream<Item = Parsed> + Unpin + use<> {
    let mut request = get(uri);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = h1_connect(addr)
        .await
        .send(request.body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    events(response)
}

/// Events of `stream` until one with id `last` (inclusive).
async fn until(stream: &mut (impl Stream<Item = Parsed> + Unpin), last: u64) -> Vec<Parsed> {
    let mut received = Vec::new();
    loop {
        let event = timeout(GUARD, stream.next())
            .await
            .unwrap_or_else(|_| panic!("hang guard: event {last} never came; got {received:?}"))
            .expect("the stream goes on");
        let done = event.id == last.to_string();
        received.push(event);
        if done {
            return received;
        }
    }
}

/// What a subscriber received: the ids of events before the reset, the resets' data,
/// and the ids after; ids must go up throughout.
fn split(received: &[Parsed]) -> (Vec<u64>, Vec<String>, Vec<u64>) {
    let (mut before, mut resets, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = 0;
    for event in received {
        let id: u64 = event.id.parse().unwrap();
        assert!(id > last, "ids go up: {received:?}");
        last = id;
        if event.event == "stream-reset" {
            resets.push(event.data.clone());
        } else if resets.is_empty() {
            before.push(id);
        } else {
            after.push(id);
        }
    }
    (before, resets, after)
}

async fn acknowledged(hub: &Hub, topic: &str, data: &str) -> u64 {
    let published = hub.publish(topic, Event::data(data)).unwrap();
    timeout(GUARD, published.acknowledged())
        .await
        .expect("hang guard: Redis acknowledges the event")
        .unwrap()
}

/// Publishes on `topic` until `stream` (`who`) receives one of those events: it is live
/// from there. The ids published.
async fn warm_up(
    hub: &Hub,
    topic: &str,
    stream: &mut (impl Stream<Item = Parsed> + Unpin),
    who: &str,
) -> Vec<u64> {
    let mut published = Vec::new();
    timeout(GUARD, async {
        loop {
            let id = acknowledged(hub, topic, "warm").await;
            published.push(id);
            let event = timeout(GUARD, stream.next())
                .await
                .unwrap_or_else(|_| panic!("hang guard: a warm-up event on {who}"))
                .unwrap();
            if event.id == id.to_string() {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hang guard: {who} goes live"));
    published
}

/// Waits until `hub` holds every id up to `id`.
async fn caught_up(hub: &Hub, id: u64) {
    timeout(GUARD, async {
        while hub.last_id() < id {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("hang guard: the hub catches up");
}

// ---- The warnings each instance writes ---------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines logged at WARN that mention `text` and `port`.
fn warnings(text: &str, port: u16) -> usize {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let log = LOG.lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains("WARN") && line.contains(text))
        .filter(|line| line.contains(&format!("127.0.0.1:{port}")))
        .count()
}

// ---- Data lost ------------------------------------------------------------------------

enum Loss {
    /// `SIGKILL`, and a start without persistence: Redis comes back empty.
    Restart,
    /// `FLUSHALL` while everything runs.
    Flush,
}

async fn a_loss_is_detected_and_not_passed_on(loss: Loss) {
    let mut redis = RedisServer::start_with(&["--appendonly", "no"]);
    warnings("", redis.port);
    let hub = redis_hub(storage(&redis.url(), "loss"));
    let server = instance(&hub).await;
    // A second instance, where nobody reads the topics before the loss: what it serves
    // afterwards comes from Redis.
    let other = redis_hub(storage(&redis.url(), "loss"));
    let other_server = instance(&other).await;

    // A live subscriber on two topics: it must get one reset, not one per topic. And one
    // on the other instance, which learns of the loss from what the first one writes.
    let mut live = connect(server.addr, "/events?topic=a&topic=b", None).await;
    let mut live_other = connect(other_server.addr, "/events?topic=c", None).await;
    warm_up(
        &hub,
        "c",
        &mut live_other,
        "the other instance's subscriber",
    )
    .await;
    let mut before = warm_up(&hub, "a", &mut live, "the live subscriber").await;
    // What the live subscriber receives from here on.
    let warm = before.len();
    for n in 0..20 {
        let topic = if n % 2 == 0 { "a" } else { "b" };
        before.push(acknowledged(&hub, topic, &format!("before {n}")).await);
    }
    let received_before = until(&mut live, *before.last().unwrap()).await;
    let held = before[warm + 9];

    match loss {
        Loss::Restart => {
            redis.kill();
            redis.spawn();
        }
        Loss::Flush => {
            let () = ::redis::cmd("FLUSHALL")
                .query(&mut redis.connection())
                .unwrap();
        }
    }

    // Publishing works again once the hub has taken up the log again.
    let first = timeout(GUARD, async {
        loop {
            if let Ok(published) = hub.publish("a", Event::data("after 0"))
                && let Ok(id) = published.acknowledged().await
            {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("hang guard: publishing works again");
    let mut after = vec![first];
    for n in 1..20 {
        let topic = if n % 2 == 0 { "a" } else { "b" };
        after.push(acknowledged(&hub, topic, &format!("after {n}")).await);
    }
    let after_c = acknowledged(&hub, "c", "after").await;
    let newest_before = *before.last().unwrap();
    assert!(
        after[0] > newest_before,
        "no id repeats one given before the loss: {after:?} after {before:?}"
    );

    // The live subscriber: what it had, one reset saying why, then every event since.
    let received = until(&mut live, *after.last().unwrap()).await;
    let (ids, resets, since) = split(&[received_before.clone(), received].concat());
    assert_eq!(ids, before[warm..], "live: before the loss");
    assert_eq!(resets, ["lost"], "live: one reset");
    assert_eq!(
        since, after,
        "live: every event acknowledged after the loss"
    );
    let (ids, resets, since) = split(&until(&mut live_other, after_c).await);
    assert_eq!(
        ids,
        Vec::<u64>::new(),
        "live on the other instance: nothing before"
    );
    assert_eq!(resets, ["lost"], "live on the other instance: one reset");
    assert_eq!(
        since,
        [after_c],
        "live on the other instance: the event since"
    );

    // New subscribers on both instances, and resumers: from before the loss (on the
    // instance that holds the topics, and on the one that reads them from Redis), and
    // from after it.
    caught_up(&other, after_c).await;
    let mut fresh = connect(server.addr, "/events?topic=a&topic=b", None).await;
    let mut fresh_other = connect(other_server.addr, "/events?topic=a&topic=b", None).await;
    let mut resumed = connect(server.addr, "/events?topic=a&topic=b", Some(held)).await;
    let mut resumed_other = connect(other_server.addr, "/events?topic=b&topic=a", Some(held)).await;
    let mut resumed_since =
        connect(other_server.addr, "/events?topic=a&topic=b", Some(after[4])).await;
    for hub in [&hub, &other] {
        timeout(GUARD, async {
            while hub.stats("a").map_or(0, |s| s.subscribers) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("hang guard: subscribed");
    }
    let more = vec![
        acknowledged(&hub, "b", "more 0").await,
        acknowledged(&other, "a", "more 1").await,
    ];
    let last = *more.last().unwrap();
    let everything_after: Vec<u64> = after.iter().chain(&more).copied().collect();

    let (ids, resets, since) = split(&until(&mut fresh, last).await);
    assert_eq!(
        (ids, resets.len(), since),
        (more.clone(), 0, vec![]),
        "new subscriber"
    );
    let (ids, resets, since) = split(&until(&mut fresh_other, last).await);
    assert_eq!(
        (ids, resets.len(), since),
        (more.clone(), 0, vec![]),
        "new subscriber on the other instance"
    );
    let (ids, resets, since) = split(&until(&mut resumed, last).await);
    assert_eq!(
        ids,
        before[warm + 10..],
        "resumed: what it missed before the loss"
    );
    assert_eq!(resets, ["lost"], "resumed: one reset");
    assert_eq!(
        since, everything_after,
        "resumed: every event since the loss"
    );
    let (ids, resets, since) = split(&until(&mut resumed_other, last).await);
    assert_eq!(ids, Vec::<u64>::new(), "resumed from Redis");
    assert_eq!(resets, ["lost"], "resumed from Redis: one reset");
    assert_eq!(
        since, everything_after,
        "resumed from Redis: every event since"
    );
    let (ids, resets, _) = split(&until(&mut resumed_since, last).await);
    assert_eq!(
        (ids, resets.len()),
        (everything_after[5..].to_vec(), 0),
        "resumed from after the loss"
    );

    // Each instance said what happened, once (not once per event).
    assert_eq!(warnings("went back", redis.port), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_detected_and_no_acknowledged_event_is_lost() {
    a_loss_is_detected_and_not_passed_on(Loss::Restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushed_while_live_is_detected_and_no_acknowledged_event_is_lost() {
    a_loss_is_detected_and_not_passed_on(Loss::Flush).await;
}

// ---- Topics that expire ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_no_longer_published_to_expires_and_its_resumers_get_the_reset() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let ttl = Duration::from_millis(300);
    let hub = redis_hub(storage(&redis.url(), "ttl").ttl(ttl));
    let server = instance(&hub).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(acknowledged(&hub, "gone", &n.to_string()).await);
    }
    let key = "{ttl}:topic:gone";
    let pttl: i64 = ::redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
    assert!(pttl > 0, "the topic's stream expires ({pttl})");

    // Redis expires it by itself.
    timeout(GUARD, async {
        loop {
            let exists: bool = ::redis::cmd("EXISTS").arg(key).query(&mut conn).unwrap();
            if !exists {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("hang guard: the topic's stream expires");
    for key in ["{ttl}:seq", "{ttl}:epoch"] {
        let pttl: i64 = ::redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        assert_eq!(pttl, -1, "{key} never expires");
    }

    // Resuming from within the expired events: the reset, never a silent gap.
    let mut within = connect(server.addr, "/events?topic=gone", Some(ids[1])).await;
    let reset = timeout(GUARD, within.next())
        .await
        .expect("hang guard: the reset of a resumer from within the expired events")
        .unwrap();
    assert_eq!(
        (reset.event.as_str(), reset.data.as_str()),
        ("stream-reset", "evicted")
    );
    // Resuming from after the last event: nothing was missed, so no reset.
    let mut after = connect(server.addr, "/events?topic=gone", Some(ids[4])).await;
    timeout(GUARD, async {
        while hub.stats("gone").map_or(0, |s| s.subscribers) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("hang guard: subscribed");
    let again = acknowledged(&hub, "gone", "again").await;
    for stream in [&mut within, &mut after] {
        let event = timeout(GUARD, stream.next())
            .await
            .expect("hang guard: the event published again")
            .unwrap();
        assert_eq!(
            (event.id, event.data),
            (again.to_string(), "again".to_owned())
        );
    }
    let pttl: i64 = ::redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
    assert!(pttl > 0, "back, and expiring again ({pttl})");

    // Once the topic is back, a resumer from within the expired events still gets the
    // reset: its new stream records what may have been there before.
    let mut late = connect(server.addr, "/events?topic=gone", Some(ids[1])).await;
    let reset = timeout(GUARD, late.next())
        .await
        .expect("hang guard: the late resumer's reset")
        .unwrap();
    assert_eq!(
        (reset.event.as_str(), reset.data.as_str()),
        ("stream-reset", "evicted")
    );
}
