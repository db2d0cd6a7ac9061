//! Instance loss: two server instances, each its own process, on one real Redis through
//! the hub's `RedisStorage`. Clients that reconnect as a browser's `EventSource` does
//! (after the `retry:` delay, sending `Last-Event-ID`) read a feed from both; one
//! instance is killed with SIGKILL while it serves them, and its clients come back on
//! the other and receive every event published meanwhile: no gap, no duplicate.

#![cfg(feature = "redis")]

mod support;

use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use support::redis::RedisServer;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::hub::RedisStorage;
use tower_sse::{Event, Hub, SseLayer};

const PREFIX: &str = "loss";
/// Hang guard; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(60);

fn redis_hub(url: &str) -> Hub {
    let storage = RedisStorage::new(url)
        .unwrap()
        .prefix(PREFIX)
        .max_len(100_000);
    Hub::builder().redis(storage).build()
}

// ---- An instance, in its own process --------------------------------------------------

/// Serves `/events?topic=..` on a Redis-backed hub, with `retry: 100` first on every
/// stream, when `TOWER_SSE_LOSS_INSTANCE` names the Redis; prints its address and serves
/// until killed.
#[test]
fn loss_instance() {
    let Ok(url) = std::env::var("TOWER_SSE_LOSS_INSTANCE") else {
        return;
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let hub = redis_hub(&url);
            let service = ServiceBuilder::new()
                .layer(SseLayer::new().retry(Duration::from_millis(100)))
                .service(hub);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("LISTENING {}", listener.local_addr().unwrap());
            tower_sse::serve(listener, service).await;
        });
}

struct Instance {
    addr: SocketAddr,
    child: Child,
}

impl Instance {
    fn spawn(url: &str) -> Self {
        let (child, addr) = spawn_self("loss_instance", &[("TOWER_SSE_LOSS_INSTANCE", url)]);
        Instance { addr, child }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- A client that reconnects as a browser does ----------------------------------------

/// What one client received, and how often it connected.
#[derive(Default)]
struct Log {
    /// `(id, data)` of every event, in the order received.
    events: Vec<(u64, String)>,
    /// The instance of each connection made.
    connections: Vec<SocketAddr>,
}

/// An `EventSource`, as the HTML standard has it: it parses the stream itself (so that
/// `retry:` takes effect even in a frame without data), keeps the last event id, and
/// when the connection ends or fails, waits the reconnection time and connects again
/// with `Last-Event-ID`. Like a browser behind a load balancer, it goes to `home` while
/// `home` accepts connections, and to the next instance otherwise. It stops after the
/// event whose data is `end`.
async fn event_source(instances: Vec<SocketAddr>, home: usize, log: Arc<Mutex<Log>>) {
    let mut last_event_id = String::new();
    let mut retry = Duration::from_secs(3);
    loop {
        // Connect: home first, else the next one that accepts.
        let mut stream = None;
        for k in 0..instances.len() {
            let addr = instances[(home + k) % instances.len()];
            if let Ok(socket) = TcpStream::connect(addr).await {
                stream = Some((addr, socket));
                break;
            }
        }
        let Some((addr, socket)) = stream else {
            tokio::time::sleep(retry).await;
            continue;
        };
        log.lock().unwrap().connections.push(addr);
        let mut client = h1_over(socket).await;
        let mut request = get("/events?topic=feed");
        if !last_event_id.is_empty() {
            request = request.header("last-event-id", &last_event_id);
        }
        client.sender.ready().await.ok();
        let response = match client
            .sender
            .send_request(request.body(empty()).unwrap())
            .await
        {
            Ok(response) if response.status() == 200 => response,
            _ => {
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        let mut body = response.into_body();
        let mut pending = String::new();
        let (mut data, mut id): (Option<String>, Option<String>) = (None, None);
        // Read until the connection ends or fails.
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(bytes) = frame.into_data() else {
                continue;
            };
            pending.push_str(std::str::from_utf8(&bytes).unwrap());
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim_end_matches('\n');
                if line.is_empty() {
                    // Dispatch: the id is committed; an event fires only with data.
                    if let Some(id) = id.take() {
                        last_event_id = id;
                    }
                    if let Some(data) = data.take() {
                        let numeric = last_event_id.parse().expect("hub ids are numbers");
                        log.lock().unwrap().events.push((numeric, data.clone()));
                        if data == "end" {
                            return;
                        }
                    }
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "data" => {
                        data = Some(match data.take() {
                            None => value.to_owned(),
                            Some(before) => format!("{before}\n{value}"),
                        })
                    }
                    "id" => id = Some(value.to_owned()),
                    "retry" => {
                        if let Ok(ms) = value.parse() {
                            retry = Duration::from_millis(ms);
                        }
                    }
                    _ => {}
                }
            }
        }
        // The connection is gone (a half-received event is dropped with it).
        client.close();
        tokio::time::sleep(retry).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_instance_resume_on_the_other_with_no_gap_and_no_duplicate() {
    const ON_A: usize = 12;
    const ON_B: usize = 4;
    const EVENTS: usize = 1_500;
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let mut a = Instance::spawn(&url);
    let b = Instance::spawn(&url);
    let publisher = redis_hub(&url);

    let logs: Vec<Arc<Mutex<Log>>> = (0..ON_A + ON_B).map(|_| Arc::default()).collect();
    let clients: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(n, log)| {
            let home = usize::from(n >= ON_A);
            tokio::spawn(event_source(vec![a.addr, b.addr], home, log.clone()))
        })
        .collect();

    // Warm up until every client reads the feed (an instance confirms a subscription
    // once its Redis reader covers the topic).
    timeout(GUARD, async {
        loop {
            publisher
                .publish("feed", Event::data("warm"))
                .unwrap()
                .acknowledged()
                .await
                .unwrap();
            if logs
                .iter()
                .all(|log| !log.lock().unwrap().events.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("hang guard: every client reads the feed");

    // The feed; a third of the way in, instance A dies while it serves its clients.
    let delivered_before_kill = Arc::new(AtomicUsize::new(0));
    let mut published = Vec::new();
    for n in 0..EVENTS {
        let data = if n + 1 == EVENTS {
            "end".to_owned()
        } else {
            format!("e{n}")
        };
        let event = Event::builder().event("feed").data(&data).build().unwrap();
        let acknowledged = publisher.publish("feed", event).unwrap().acknowledged();
        let id = timeout(GUARD, acknowledged)
            .await
            .unwrap_or_else(|_| panic!("hang guard: Redis acknowledges event {n}"))
            .unwrap();
        published.push((id, data));
        if n == EVENTS / 3 {
            // Kill only once A's clients are reading the feed itself.
            timeout(GUARD, async {
                while !logs[..ON_A].iter().all(|log| {
                    log.lock()
                        .unwrap()
                        .events
                        .iter()
                        .any(|(_, d)| d.starts_with('e'))
                }) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("hang guard: A's clients read the feed");
            let on_a: usize = logs[..ON_A]
                .iter()
                .map(|log| log.lock().unwrap().events.len())
                .sum();
            delivered_before_kill.store(on_a, Ordering::SeqCst);
            a.kill();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    for client in clients {
        timeout(GUARD, client)
            .await
            .expect("hang guard: every client gets the end")
            .unwrap();
    }
    let first_id = published[0].0;
    for (n, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let ids: Vec<u64> = log.events.iter().map(|(id, _)| *id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "client {n}: ids go up, each once"
        );
        // From the feed's first event on, exactly what was published.
        let feed: Vec<(u64, String)> = log
            .events
            .iter()
            .filter(|(id, _)| *id >= first_id)
            .cloned()
            .collect();
        assert_eq!(feed, published, "client {n}");
        if n < ON_A {
            assert_eq!(
                log.connections,
                [a.addr, b.addr],
                "client {n} came back once, on B"
            );
        } else {
            assert_eq!(log.connections, [b.addr], "client {n} never reconnected");
        }
    }
    println!(
        "instance loss: {} events, {ON_A} clients moved from the killed instance (they had {} events between them when it died), {ON_B} stayed; events lost: 0, duplicated: 0",
        published.len(),
        delivered_before_kill.load(Ordering::SeqCst),
    );
}
