//! Hostile requests against a real server with a `Hub`, a `StreamLimit` and an
//! authorization hook, over real sockets: `Last-Event-ID` and query values that are huge,
//! not UTF-8, full of control characters, negative or beyond the newest id; too many
//! topics; topics that are not allowed; a flood above the cap. None may panic, leak, or
//! disturb a healthy stream that reads throughout.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower_sse::{Event, Hub, SseLayer, StreamLimit};

/// Hang guard for anything the test waits for: never a time it asserts.
const GUARD: Duration = Duration::from_secs(30);
/// Streams the server holds open at once.
const CAP: usize = 40;
/// Topics one request may name.
const MAX_TOPICS: usize = 8;

/// Counts panics on any thread of this test binary: a panic in a connection task would
/// otherwise only close that connection.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

struct Server {
    server: TestServer,
    hub: Hub,
    limit: StreamLimit,
    /// Streams the inner service started.
    opened: Arc<AtomicU64>,
    /// Ends reported through `on_end`.
    ended: Arc<AtomicU64>,
}

/// The server under attack: `/events?topic=..` on a hub that lets anyone read topics
/// but `private/<name>`, which only `x-user: <name>` may read.
async fn start() -> Server {
    count_panics();
    let hub = Hub::builder()
        .max_topics(MAX_TOPICS)
        .history_events(100)
        .authorize(|topic, request| match topic.strip_prefix("private/") {
            None => true,
            Some(owner) => request
                .headers
                .get("x-user")
                .is_some_and(|user| user.as_bytes() == owner.as_bytes()),
        })
        .build();
    let limit = StreamLimit::new(CAP).retry_after(Duration::from_secs(7));
    let opened = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let layer = SseLayer::new().limit(limit.clone()).on_end({
        let ended = ended.clone();
        move |_| {
            ended.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The hub answers with its stream, or refuses (400, 403); its streams are counted.
    let service = ServiceBuilder::new()
        .layer(layer)
        .map_response({
            let opened = opened.clone();
            move |response: Response<Either<_, _>>| {
                if matches!(response.body(), Either::Left(_)) {
                    opened.fetch_add(1, Ordering::SeqCst);
                }
                response
            }
        })
        .service(hub.clone());
    Server {
        server: serve(service).await,
        hub,
        limit,
        opened,
        ended,
    }
}

impl Server {
    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn subscribers(&self) -> usize {
        self.hub.all_stats().iter().map(|s| s.subscribers).sum()
    }

    /// Waits until only `streams` streams are open (subscribers, places under the limit,
    /// and unreported ends all agree).
    async fn settle(&self, streams: usize) {
        timeout(GUARD, async {
            loop {
                let unreported =
                    self.opened.load(Ordering::SeqCst) - self.ended.load(Ordering::SeqCst);
                if self.subscribers() == streams
                    && self.limit.open_streams() == streams
                    && unreported == streams as u64
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "streams did not settle to {streams}: subscribers {}, open {}, opened {}, ended {}",
                self.subscribers(),
                self.limit.open_streams(),
                self.opened.load(Ordering::SeqCst),
                self.ended.load(Ordering::SeqCst)
            )
        });
    }
}

/// What a client saw: the status, and for a stream, the events before the marker the
/// test published after the response arrived (`(event type, data)`).
#[derive(Debug, PartialEq)]
enum Seen {
    Refused(StatusCode),
    Stream(Vec<(String, String)>),
}

fn reset(reason: &str) -> Seen {
    Seen::Stream(vec![("stream-reset".to_owned(), reason.to_owned())])
}

/// Sends `request`, and if it opens a stream, publishes a marker on `topic` and
/// collects what comes before it.
async fn attempt(
    server: &Server,
    topic: &str,
    request: Request<http_body_util::Empty<bytes::Bytes>>,
) -> Seen {
    let mut client = h1_connect(server.addr()).await;
    let response = timeout(GUARD, client.send(request))
        .await
        .expect("answered");
    let status = response.status();
    if status != StatusCode::OK {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["retry-after"], "7");
        }
        if status == StatusCode::FORBIDDEN {
            use http_body_util::BodyExt;
            let body = timeout(GUARD, response.into_body().collect())
                .await
                .expect("the body of the 403")
                .unwrap()
                .to_bytes();
            assert!(
                !String::from_utf8_lossy(&body).contains("private/"),
                "the refusal does not echo the topic"
            );
        }
        client.close();
        return Seen::Refused(status);
    }
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = events(response);
    // The subscription exists once the response head has arrived.
    server
        .hub
        .publish(
            topic,
            Event::builder().event("marker").data("m").build().unwrap(),
        )
        .unwrap();
    let mut before = Vec::new();
    loop {
        let event = timeout(GUARD, events.next())
            .await
            .expect("the marker arrives")
            .expect("open");
        if event.event == "marker" {
            break;
        }
        before.push((event.event, event.data));
    }
    drop(events);
    client.close();
    Seen::Stream(before)
}

fn with_id(uri: &str, id: &[u8]) -> Request<http_body_util::Empty<bytes::Bytes>> {
    get(uri)
        .header("last-event-id", HeaderValue::from_bytes(id).unwrap())
        .body(empty())
        .unwrap()
}

fn plain(uri: &str) -> Request<http_body_util::Empty<bytes::Bytes>> {
    get(uri).body(empty()).unwrap()
}

/// Writes raw request bytes (what no well-behaved client library would send) and
/// returns the status of the answer, or `None` if the server closed without one.
async fn raw_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = socket.write_all(request).await;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(GUARD, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server answers or closes");
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// A healthy client that reads `news` throughout, and the publisher feeding it.
struct Healthy {
    stop: tokio::sync::oneshot::Sender<()>,
    publisher: tokio::task::JoinHandle<Vec<u64>>,
    reader: tokio::task::JoinHandle<Vec<u64>>,
}

async fn healthy(server: &Server) -> Healthy {
    let response = h1_connect(server.addr())
        .await
        .send(plain("/events?topic=news"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = events(response);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        loop {
            let event = Event::data(&format!("news {}", ids.len()));
            ids.push(hub.publish("news", event).unwrap().id().unwrap());
            tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
        ids
    });
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Ok(Some(event)) = timeout(Duration::from_secs(2), events.next()).await {
            ids.push(event.id.parse().unwrap());
        }
        ids
    });
    Healthy {
        stop,
        publisher,
        reader,
    }
}

impl Healthy {
    /// Every event published reached the healthy client, in order, once.
    async fn check(self) {
        self.stop.send(()).unwrap();
        let published = timeout(GUARD, self.publisher)
            .await
            .expect("the publisher stops")
            .unwrap();
        let received = timeout(GUARD, self.reader)
            .await
            .expect("the healthy client's reader stops")
            .unwrap();
        assert!(published.len() > 10, "the publisher ran throughout");
        assert_eq!(received, published);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_last_event_ids_and_queries_never_panic_leak_or_disturb_others() {
    let server = start().await;
    // History for the resume cases: three events on `h`.
    let h: Vec<u64> = (0..3)
        .map(|n| {
            server
                .hub
                .publish("h", Event::data(&n.to_string()))
                .unwrap()
                .id()
                .unwrap()
        })
        .collect();
    let healthy = healthy(&server).await;
    let mut topics_after_round = Vec::new();
    for round in 0..3 {
        let newest = server.hub.last_id();
        let huge = vec![b'7'; 64 * 1024];
        let just_too_long = vec![b'1'; 1025];
        let long_query = format!("/events?topic=h&lastEventId={}", "A".repeat(2000));
        let many_topics: String = (0..=MAX_TOPICS).map(|n| format!("topic=t{n}&")).collect();
        let same_topic_many_times = "topic=h&".repeat(5000);
        let cases: Vec<(&str, Request<_>, Seen)> = vec![
            // The resume point, from the header: in history, or not.
            (
                "valid id",
                with_id("/events?topic=h", h[0].to_string().as_bytes()),
                Seen::Stream(vec![
                    ("message".into(), "1".into()),
                    ("message".into(), "2".into()),
                ]),
            ),
            (
                "negative",
                with_id("/events?topic=h", b"-1"),
                reset("malformed"),
            ),
            (
                "beyond u64",
                with_id("/events?topic=h", b"18446744073709551616"),
                reset("malformed"),
            ),
            (
                "beyond newest",
                with_id("/events?topic=h", (newest + 1_000).to_string().as_bytes()),
                reset("unknown"),
            ),
            ("zero", with_id("/events?topic=h", b"0"), reset("unknown")),
            (
                "not a number",
                with_id("/events?topic=h", b"abc \t def"),
                reset("malformed"),
            ),
            (
                "not UTF-8",
                with_id("/events?topic=h", b"\xff\xfe\xfd"),
                Seen::Stream(vec![]),
            ),
            (
                "huge header",
                with_id("/events?topic=h", &huge),
                Seen::Stream(vec![]),
            ),
            (
                "1 KiB + 1",
                with_id("/events?topic=h", &just_too_long),
                Seen::Stream(vec![]),
            ),
            // From the query.
            (
                "query NUL CR LF",
                plain("/events?topic=h&lastEventId=%00%0D%0A"),
                reset("malformed"),
            ),
            (
                "query controls",
                plain("/events?topic=h&lastEventId=%01%02%1B%7F"),
                reset("malformed"),
            ),
            (
                "query not UTF-8",
                plain("/events?topic=h&lastEventId=%FF%C3"),
                Seen::Stream(vec![]),
            ),
            ("query huge", plain(&long_query), Seen::Stream(vec![])),
            (
                "query broken escapes",
                plain("/events?topic=h&lastEventId=%%%G1%"),
                reset("malformed"),
            ),
            // Topics.
            (
                "no topic",
                plain("/events?lastEventId=1"),
                Seen::Refused(StatusCode::BAD_REQUEST),
            ),
            (
                "topic not UTF-8",
                plain("/events?topic=%FF"),
                Seen::Refused(StatusCode::BAD_REQUEST),
            ),
            (
                "too many topics",
                plain(&format!("/events?{many_topics}")),
                Seen::Refused(StatusCode::BAD_REQUEST),
            ),
            (
                "one topic 5000 times",
                plain(&format!("/events?{same_topic_many_times}")),
                Seen::Stream(vec![]),
            ),
            (
                "topic with NUL and controls",
                plain("/events?topic=%00%0D%0A%1B"),
                Seen::Stream(vec![]),
            ),
            (
                "private, anonymous",
                plain("/events?topic=private/ann"),
                Seen::Refused(StatusCode::FORBIDDEN),
            ),
            (
                "private among allowed",
                plain("/events?topic=h&topic=private/ann"),
                Seen::Refused(StatusCode::FORBIDDEN),
            ),
            (
                "private, someone else",
                get("/events?topic=private/ann")
                    .header("x-user", "bob")
                    .body(empty())
                    .unwrap(),
                Seen::Refused(StatusCode::FORBIDDEN),
            ),
            (
                "private, its owner",
                get("/events?topic=private/ann")
                    .header("x-user", "ann")
                    .body(empty())
                    .unwrap(),
                Seen::Stream(vec![]),
            ),
        ];
        for (name, request, expected) in cases {
            // The marker goes to the first topic named (the stream reads it).
            let query = request.uri().query().unwrap_or("").to_owned();
            let topic = form_urlencoded::parse(query.as_bytes())
                .find_map(|(name, value)| (name == "topic").then(|| value.into_owned()))
                .unwrap_or_default();
            let seen = attempt(&server, &topic, request).await;
            assert_eq!(seen, expected, "round {round}: {name}");
        }

        // Raw bytes no client library sends: hyper refuses them before the service runs.
        let head = |header: &[u8]| {
            [
                b"GET /events?topic=h HTTP/1.1\r\nhost: x\r\nlast-event-id: ".as_slice(),
                header,
                b"\r\n\r\n",
            ]
            .concat()
        };
        let raw: Vec<(&str, Vec<u8>, u16)> = vec![
            ("NUL in header", head(b"1\x002"), 400),
            ("bare CR in header", head(b"1\r2"), 400),
            ("control in header", head(b"1\x01"), 400),
            ("header of 1 MiB", head(&vec![b'9'; 1 << 20]), 431),
            (
                "NUL in path",
                b"GET /events?topic=h\x00 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
                400,
            ),
            (
                "URI of 100 KiB",
                [
                    b"GET /events?topic=".as_slice(),
                    &vec![b'a'; 100 << 10],
                    b" HTTP/1.1\r\nhost: x\r\n\r\n",
                ]
                .concat(),
                414,
            ),
        ];
        for (name, bytes, expected) in raw {
            let status = raw_status(server.addr(), &bytes).await;
            assert_eq!(status, Some(expected), "round {round}: {name}");
        }

        server.settle(1).await;
        topics_after_round.push(server.hub.all_stats().len());
    }
    healthy.check().await;
    // No growth across rounds: topics without history are forgotten with their last
    // subscriber; only `h`, `news` and the cases' marker topics stay.
    assert_eq!(topics_after_round[1], topics_after_round[0]);
    assert_eq!(topics_after_round[2], topics_after_round[0]);
    server.settle(0).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_above_the_cap_gets_503_with_retry_after_and_leaves_nothing_behind() {
    let server = start().await;
    let healthy = healthy(&server).await;
    for round in 0..3 {
        // Fill every place but the healthy client's, then flood.
        let mut held = Vec::new();
        for _ in 1..CAP {
            let mut client = h1_connect(server.addr()).await;
            let response = client.send(plain("/events?topic=flood")).await;
            assert_eq!(response.status(), StatusCode::OK);
            held.push((client, response));
        }
        assert_eq!(server.limit.open_streams(), CAP);
        let refused_before = server.limit.refused();
        let flood: Vec<_> = (0..200)
            .map(|_| {
                let addr = server.addr();
                tokio::spawn(async move {
                    let mut client = h1_connect(addr).await;
                    let response = client.send(plain("/events?topic=flood")).await;
                    let retry_after = response.headers().get("retry-after").cloned();
                    client.close();
                    (response.status(), retry_after)
                })
            })
            .collect();
        for answer in flood {
            let (status, retry_after) = timeout(GUARD, answer)
                .await
                .expect("an answer to the flood")
                .unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "round {round}");
            assert_eq!(retry_after.unwrap(), "7");
        }
        assert_eq!(server.limit.refused() - refused_before, 200);
        assert_eq!(server.hub.stats("flood").unwrap().subscribers, CAP - 1);
        // The flood over, the held streams still work and places free up.
        server
            .hub
            .publish("flood", Event::data("still here"))
            .unwrap();
        for (client, response) in held {
            let mut events = events(response);
            let event = timeout(GUARD, events.next())
                .await
                .expect("the event on a held stream")
                .unwrap();
            assert_eq!(event.data, "still here");
            drop(events);
            client.close();
        }
        server.settle(1).await;
        assert!(
            server
                .hub
                .stats("flood")
                .is_some_and(|s| s.subscribers == 0)
        );
    }
    healthy.check().await;
    server.settle(0).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic happened");
}
