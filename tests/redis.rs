//! The Redis Streams storage against a real `redis-server` on a free loopback port:
//! two server instances as separate processes on one Redis, cross-instance resume,
//! the gap signal, and Redis going away mid-stream.

#![cfg(feature = "redis")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::Request;
use hyper::body::Incoming;
use support::redis::RedisServer;
use support::*;
use tokio::time::timeout;
use tower::{ServiceBuilder, service_fn};
use tower_sse::hub::RedisStorage;
use tower_sse::{Event, Hub, SseLayer};

fn redis_hub(url: &str, prefix: &str, max_len: usize) -> Hub {
    let storage = RedisStorage::new(url)
        .unwrap()
        .prefix(prefix)
        .max_len(max_len);
    Hub::builder().redis(storage).build()
}

/// An SSE endpoint on `hub`; `POST`-free: publishing happens through `hub` directly, or
/// through `/publish?topic=..&data=..` on a child instance.
async fn instance(hub: Hub, layer: SseLayer) -> TestServer {
    serve(ServiceBuilder::new().layer(layer).service(hub)).await
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
    let response = h1_connect(addr)
        .await
        .send(request.body(empty()).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    events(response)
}

/// Waits until `hub` delivers `topic` (its first subscriber is covered by Redis).
async fn until_subscribed(hub: &Hub, topic: &str, subscribers: usize) {
    timeout(Duration::from_secs(10), async {
        while hub.stats(topic).map_or(0, |s| s.subscribers) < subscribers {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("subscribed");
}

async fn next(
    stream: &mut (impl Stream<Item = eventsource_stream::Event> + Unpin),
) -> eventsource_stream::Event {
    timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
}

// ---- A server instance in its own process ----------------------------------------
//
// The test binary runs itself as a child with `TOWER_SSE_INSTANCE` set: that test then
// serves `/events` and `/publish` on a hub backed by the given Redis, prints its address,
// and runs until killed.

#[test]
fn child_instance() {
    let Ok(url) = std::env::var("TOWER_SSE_INSTANCE") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let hub = redis_hub(&url, "multi", 100_000);
        let sse = ServiceBuilder::new()
            .layer(SseLayer::new())
            .service(hub.clone());
        let app = service_fn(move |request: Request<Incoming>| {
            let (hub, sse) = (hub.clone(), sse.clone());
            async move {
                use http_body_util::{BodyExt, Full};
                use tower::ServiceExt;
                if request.uri().path() == "/publish" {
                    // /publish?topic=t&data=d answers with the acknowledged id.
                    let query = request.uri().query().unwrap_or("");
                    let param = |name: &str| {
                        query
                            .split('&')
                            .find_map(|p| p.strip_prefix(&format!("{name}=")))
                            .unwrap_or("")
                            .to_owned()
                    };
                    let event = Event::builder()
                        .event(&param("topic"))
                        .data(&param("data"))
                        .build()
                        .unwrap();
                    let id = hub
                        .publish(&param("topic"), event)
                        .unwrap()
                        .acknowledged()
                        .await
                        .unwrap();
                    let body = Full::new(bytes::Bytes::from(id.to_string()))
                        .map_err(|e| match e {})
                        .boxed();
                    return Ok::<_, Infallible>(http::Response::new(body));
                }
                let response = sse.oneshot(request).await?;
                Ok(response.map(|b| b.boxed()))
            }
        });
        let server = serve(app).await;
        println!("LISTENING {}", server.addr);
        std::future::pending::<()>().await;
    });
}

struct Instance {
    addr: SocketAddr,
    child: Child,
}

impl Instance {
    fn spawn(url: &str) -> Self {
        let (child, addr) = spawn_self("child_instance", &[("TOWER_SSE_INSTANCE", url)]);
        Instance { addr, child }
    }

    async fn publish(&self, topic: &str, data: &str) -> u64 {
        use http_body_util::BodyExt;
        let uri = format!("/publish?topic={topic}&data={data}");
        let body = within(&format!("the instance's answer to {uri}"), async {
            let mut client = h1_connect(self.addr).await;
            let response = client
                .send(Request::get(uri.as_str()).body(empty()).unwrap())
                .await;
            response.into_body().collect().await.unwrap().to_bytes()
        })
        .await;
        std::str::from_utf8(&body).unwrap().parse().unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_two_processes_serve_one_feed_and_resume_across() {
    let redis = RedisServer::start();
    let a = Instance::spawn(&redis.url());
    let b = Instance::spawn(&redis.url());

    let mut on_a = connect(a.addr, "/events?topic=x&topic=y", None).await;
    let mut on_b = connect(b.addr, "/events?topic=x&topic=y", None).await;
    // Each instance confirms its subscription once its reader covers the topics: wait
    // for a first event through both before counting.
    let warm = a.publish("x", "warm").await;
    assert_eq!(next(&mut on_a).await.id, warm.to_string());
    assert_eq!(next(&mut on_b).await.id, warm.to_string());

    let mut published = Vec::new();
    for n in 0..200 {
        let (instance, topic) = match n % 4 {
            0 => (&a, "x"),
            1 => (&b, "y"),
            2 => (&b, "x"),
            _ => (&a, "y"),
        };
        published.push((
            instance.publish(topic, &format!("e{n}")).await,
            topic,
            format!("e{n}"),
        ));
    }
    for stream in [&mut on_a, &mut on_b] {
        for (id, topic, data) in &published {
            let event = next(stream).await;
            assert_eq!(
                (&event.id, event.event.as_str(), &event.data),
                (&id.to_string(), *topic, data)
            );
        }
    }

    // A client holding id X from A comes back on B with `Last-Event-ID: X` and gets
    // exactly the events it missed, across both topics, then live ones.
    let held = published[49].0;
    drop(on_a);
    let mut missed = Vec::new();
    for n in 200..230 {
        let (instance, topic) = if n % 2 == 0 { (&a, "x") } else { (&b, "y") };
        missed.push(instance.publish(topic, &format!("e{n}")).await);
    }
    let mut resumed = connect(b.addr, "/events?topic=y&topic=x", Some(&held.to_string())).await;
    let expected: Vec<u64> = published[50..]
        .iter()
        .map(|p| p.0)
        .chain(missed.iter().copied())
        .collect();
    for id in &expected {
        assert_eq!(next(&mut resumed).await.id, id.to_string());
    }
    let live = a.publish("x", "live").await;
    assert_eq!(next(&mut resumed).await.id, live.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_redis_keeps_gets_the_reset_event() {
    let redis = RedisServer::start();
    let hub = redis_hub(&redis.url(), "trim", 20);
    let server = instance(hub.clone(), SseLayer::new()).await;
    let first = acknowledged(&hub, "t", "0").await;
    let mut last = first;
    for n in 1..200 {
        last = acknowledged(&hub, "t", &n.to_string()).await;
    }
    let mut stream = connect(server.addr, "/events?topic=t", Some(&first.to_string())).await;
    let reset = next(&mut stream).await;
    assert_eq!(
        (reset.event.as_str(), reset.data.as_str()),
        ("stream-reset", "evicted")
    );

    // An id Redis never issued is unknown; a recent one replays without a reset.
    let mut stream = connect(
        server.addr,
        "/events?topic=t",
        Some(&(last + 1000).to_string()),
    )
    .await;
    let reset = next(&mut stream).await;
    assert_eq!(reset.data, "unknown");
    let mut stream = connect(
        server.addr,
        "/events?topic=t",
        Some(&(last - 2).to_string()),
    )
    .await;
    assert_eq!(next(&mut stream).await.id, (last - 1).to_string());
    assert_eq!(next(&mut stream).await.id, last.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_keeps_streams_up_fails_publishes_and_loses_no_acknowledged_event() {
    let mut redis = RedisServer::start();
    let hub = redis_hub(&redis.url(), "outage", 10_000);
    let layer = SseLayer::new().heartbeat(Duration::from_millis(100));
    let server = instance(hub.clone(), layer).await;

    let response = h1_connect(server.addr)
        .await
        .send(get("/events?topic=t").body(empty()).unwrap())
        .await;
    let mut body = response.into_body();
    until_subscribed(&hub, "t", 1).await;

    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let published = hub.publish("t", Event::data(&format!("before {n}")));
        let id = within(
            "Redis to acknowledge the event",
            published.unwrap().acknowledged(),
        );
        acknowledged.push(id.await.unwrap());
    }

    redis.stop();
    // Publishing fails promptly once the writer has noticed (the first attempt may still
    // be accepted into the queue and written after the restart).
    let mut queued = Vec::new();
    let failed = timeout(Duration::from_secs(10), async {
        loop {
            match hub.publish("t", Event::data("during")) {
                Err(_) => break,
                Ok(published) => queued.push(published),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        failed.is_ok(),
        "publish reports the outage instead of blocking"
    );

    // The SSE connection stays up: heartbeats keep arriving while Redis is down.
    let mut seen = Vec::new();
    let mut heartbeats = 0;
    while heartbeats < 3 {
        let data = timeout(Duration::from_secs(5), next_data(&mut body))
            .await
            .expect("a heartbeat within 5 s while Redis is down")
            .unwrap();
        let text = String::from_utf8(data.to_vec()).unwrap();
        heartbeats += text.matches(":\n\n").count();
        seen.push(text);
    }

    redis.spawn();
    for published in queued {
        acknowledged.push(
            timeout(Duration::from_secs(20), published.acknowledged())
                .await
                .expect("a queued event is written within 20 s once Redis is back")
                .unwrap(),
        );
    }
    let after = timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(published) = hub.publish("t", Event::data("after"))
                && let Ok(id) = published.acknowledged().await
            {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("publishing works again once Redis is back");
    acknowledged.push(after);

    // Every acknowledged event reaches the subscriber, in order, exactly once.
    let mut all = seen.concat();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ids = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing events: acknowledged {acknowledged:?}, stream {all:?}"
        );
        let complete = &all[..all.rfind("\n\n").map_or(0, |i| i + 2)];
        let ids: Vec<u64> = complete
            .lines()
            .filter_map(|line| line.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect();
        if ids.len() >= acknowledged.len() {
            break ids;
        }
        let data = timeout(Duration::from_secs(20), next_data(&mut body))
            .await
            .expect("the stream goes on")
            .unwrap();
        all.push_str(std::str::from_utf8(&data).unwrap());
    };
    assert_eq!(ids, acknowledged);
}

/// An event stream read raw: heartbeats (`:\n\n`) are counted, events' ids collected.
struct Raw {
    body: Incoming,
    text: String,
}

impl Raw {
    async fn connect(addr: SocketAddr, uri: &str, last_event_id: Option<u64>) -> Raw {
        let mut request = get(uri);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = h1_connect(addr)
            .await
            .send(request.body(empty()).unwrap())
            .await;
        assert_eq!(response.status(), 200);
        Raw {
            body: response.into_body(),
            text: String::new(),
        }
    }

    async fn read(&mut self) {
        let data = timeout(Duration::from_secs(30), next_data(&mut self.body))
            .await
            .expect("something within 30 s: an event or a heartbeat")
            .expect("the stream goes on");
        self.text.push_str(std::str::from_utf8(&data).unwrap());
    }

    async fn heartbeats(&mut self, count: usize) {
        while self.text.matches(":\n\n").count() < count {
            self.read().await;
        }
    }

    /// The ids of the first `count` events, once that many arrived.
    async fn ids(&mut self, count: usize) -> Vec<u64> {
        loop {
            assert!(!self.text.contains("stream-reset"), "{}", self.text);
            let complete = &self.text[..self.text.rfind("\n\n").map_or(0, |i| i + 2)];
            let ids: Vec<u64> = complete
                .lines()
                .filter_map(|line| line.strip_prefix("id: "))
                .map(|id| id.parse().unwrap())
                .collect();
            if ids.len() >= count {
                return ids;
            }
            self.read().await;
        }
    }
}

async fn acknowledged(hub: &Hub, topic: &str, data: &str) -> u64 {
    let published = hub.publish(topic, Event::data(data)).unwrap();
    within("Redis to acknowledge the event", published.acknowledged())
        .await
        .unwrap()
}

/// Issue 12: the history connection never reconnected, so after Redis restarted every
/// new subscriber got an error and an ended stream. Here new subscribers, resuming
/// (history from Redis) or live, work after a restart, and those that arrive while
/// Redis is down get heartbeats, then their events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_new_subscribers_resume_and_go_live_even_during_the_outage() {
    let mut redis = RedisServer::start();
    let hub = redis_hub(&redis.url(), "restart", 10_000);
    let layer = SseLayer::new().heartbeat(Duration::from_millis(100));
    let server = instance(hub.clone(), layer).await;

    // A subscriber on `t` throughout; nobody reads `u` here before the outage, so its
    // history can only come from Redis.
    let mut watcher = Raw::connect(server.addr, "/events?topic=t", None).await;
    let mut before = Vec::new();
    for n in 0..10 {
        let topic = if n % 2 == 0 { "u" } else { "t" };
        before.push((
            acknowledged(&hub, topic, &format!("before {n}")).await,
            topic,
        ));
    }
    let before_t: Vec<u64> = before.iter().filter(|b| b.1 == "t").map(|b| b.0).collect();
    assert_eq!(watcher.ids(5).await, before_t);

    redis.stop();
    let mut queued = Vec::new();
    timeout(Duration::from_secs(10), async {
        loop {
            match hub.publish("u", Event::data("during")) {
                Err(err) => {
                    // The error says why, with the connection error as its source.
                    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
                    break;
                }
                Ok(published) => queued.push(published),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("publishing reports the outage");

    // New subscribers while Redis is down: one resumes from before the outage, one
    // reads `u` live. Their streams stay up.
    let mut resumed_down =
        Raw::connect(server.addr, "/events?topic=t&topic=u", Some(before[2].0)).await;
    let mut live_down = Raw::connect(server.addr, "/events?topic=u", None).await;
    resumed_down.heartbeats(3).await;
    live_down.heartbeats(3).await;

    redis.spawn();
    let mut after = Vec::new();
    for published in queued {
        let id = timeout(Duration::from_secs(30), published.acknowledged())
            .await
            .expect("a queued event is written once Redis is back")
            .unwrap();
        after.push((id, "u"));
    }
    let first = timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(published) = hub.publish("t", Event::data("back"))
                && let Ok(id) = published.acknowledged().await
            {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("publishing works again once Redis is back");
    after.push((first, "t"));
    for n in 0..10 {
        let topic = if n % 2 == 0 { "t" } else { "u" };
        after.push((
            acknowledged(&hub, topic, &format!("after {n}")).await,
            topic,
        ));
    }
    after.sort_unstable();

    // New subscribers after the restart: one resumes from before the outage (its
    // history is read from Redis over the reconnected connection), one goes live.
    let mut resumed_up =
        Raw::connect(server.addr, "/events?topic=u&topic=t", Some(before[5].0)).await;

    let all: Vec<u64> = before.iter().chain(&after).map(|e| e.0).collect();
    let after_u: Vec<u64> = after.iter().filter(|a| a.1 == "u").map(|a| a.0).collect();
    let expected_down: Vec<u64> = all[3..].to_vec();
    let expected_up: Vec<u64> = all[6..].to_vec();
    assert_eq!(
        resumed_down.ids(expected_down.len()).await,
        expected_down,
        "no gap, no duplicate"
    );
    assert_eq!(live_down.ids(after_u.len()).await, after_u);
    assert_eq!(
        resumed_up.ids(expected_up.len()).await,
        expected_up,
        "no gap, no duplicate"
    );
    let after_t: Vec<u64> = after.iter().filter(|a| a.1 == "t").map(|a| a.0).collect();
    let watched: Vec<u64> = before_t.iter().chain(&after_t).copied().collect();
    assert_eq!(watcher.ids(watched.len()).await, watched);

    let mut live_up = Raw::connect(server.addr, "/events?topic=u", None).await;
    live_up.heartbeats(1).await;
    let live = acknowledged(&hub, "u", "live").await;
    assert_eq!(live_up.ids(1).await, [live]);
    assert_eq!(
        *live_down.ids(after_u.len() + 1).await.last().unwrap(),
        live
    );
}
