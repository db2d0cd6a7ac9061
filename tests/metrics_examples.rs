//! `GET /metrics` of the examples, scraped from the example processes while clients
//! come and go (feature `metrics`; the examples install `metrics-exporter-prometheus`).
//!
//! - `axum_counts_what_plain_clients_saw` (feature `axum`): plain HTTP clients read
//!   chat streams (closed by the client), `/countdown` streams to their end (one resumed
//!   with `Last-Event-ID`), and are refused (over `MAX_STREAMS`, 204 stop, 405). Once
//!   every stream is over, the gauges are back where they started and the counters moved
//!   by what the clients saw: streams opened and ended by reason, events, bytes on the
//!   wire (heartbeats the server wrote after a client's last read are the only bytes it
//!   may count beyond them), refusals by reason, publishes.
//! - `aircraft_gauges_return_while_browsers_come_and_go`: Chromium pages open the map,
//!   whose panel shows the server's numbers from `/metrics`; the scrape counts their
//!   streams open; pages close, the browser quits, and the gauges (streams, connections,
//!   hub subscriptions) return to their starting values, with every stream opened also
//!   ended as `client_gone`, and at least the events the pages received counted.
//!
//! Nothing waits for a duration: each step waits for a response, an event, a page
//! condition, or a scrape that shows the expected value, under a hang guard that fails
//! with the last scrape.

#![cfg(all(feature = "metrics", feature = "serve"))]

#[path = "browser/driver.rs"]
mod driver;
mod support;
mod support_metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

use support::{empty, get, h1_connect};
use support_metrics::Scrape;

/// The hang guard of every wait; never a duration the test asserts.
const GUARD: Duration = Duration::from_secs(90);

fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let mut names = vec!["aircraft"];
        if cfg!(feature = "axum") {
            names.push("axum");
        }
        support::build_examples(&names)
    });
    dir.join(name)
}

/// An example process, killed when dropped.
struct Running {
    _child: Child,
    addr: SocketAddr,
}

impl Running {
    async fn start(name: &str, envs: &[(&str, &str)]) -> Running {
        let mut child = Command::new(binary(name));
        for variable in [
            "ADDR",
            "RUST_LOG",
            "MAX_STREAMS",
            "PER_CLIENT",
            "TRUST_PROXY",
        ] {
            child.env_remove(variable);
        }
        let mut child = child
            .env("ADDR", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (lines, mut listening) = mpsc::unbounded_channel();
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = lines.send(line);
            }
        });
        let addr = timeout(GUARD, async {
            while let Some(line) = listening.recv().await {
                if let Some((_, url)) = line.split_once("listening on http://") {
                    return url.trim_end_matches('/').parse().unwrap();
                }
            }
            panic!("{name} ended before it listened");
        })
        .await
        .expect("the example listens");
        Running {
            _child: child,
            addr,
        }
    }

    async fn scrape(&self) -> Scrape {
        let mut client = h1_connect(self.addr).await;
        let request = Request::get("/metrics")
            .header("connection", "close")
            .body(empty())
            .unwrap();
        let response = timeout(GUARD, client.send(request))
            .await
            .expect("an answer to /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        let body = timeout(GUARD, response.into_body().collect())
            .await
            .expect("the whole answer to /metrics")
            .unwrap()
            .to_bytes();
        Scrape::parse(std::str::from_utf8(&body).unwrap())
    }

    /// Scrapes until `done` holds for a scrape, and gives it; fails with the last one.
    async fn scrape_until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let mut last = Scrape::default();
        let found = timeout(GUARD, async {
            loop {
                last = self.scrape().await;
                if done(&last) {
                    return last.clone();
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no scrape where {what}: {:#?}", last.ours()))
    }
}

/// `key` after minus before.
fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

/// The gauges that must come back once the clients are gone.
const GAUGES: &[&str] = &[
    "tower_sse_streams_open",
    "tower_sse_streams_stalled",
    "tower_sse_hub_subscriptions",
    "tower_sse_connections_open",
];

fn gauges_back(before: &Scrape, now: &Scrape) -> bool {
    GAUGES
        .iter()
        .all(|name| now.get(name, &[]) == before.get(name, &[]))
}

/// What a client read: bytes on the wire and events (blocks with a `data` field).
#[derive(Debug, Default)]
struct Seen {
    bytes: usize,
    text: String,
    events: usize,
    ended: bool,
}

async fn read(response: &mut Response<Incoming>, events: Option<usize>) -> Seen {
    let mut seen = Seen::default();
    loop {
        if events.is_some_and(|n| seen.events >= n) {
            return seen;
        }
        let Some(frame) = timeout(GUARD, response.body_mut().frame())
            .await
            .expect("a frame in time")
        else {
            seen.ended = true;
            return seen;
        };
        let Ok(data) = frame.expect("a frame").into_data() else {
            continue;
        };
        seen.bytes += data.len();
        seen.text.push_str(std::str::from_utf8(&data).unwrap());
        let blocks: Vec<&str> = seen.text.split("\n\n").collect();
        seen.events = blocks[..blocks.len() - 1]
            .iter()
            .filter(|block| block.lines().any(|line| line.starts_with("data:")))
            .count();
    }
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_counts_what_plain_clients_saw() {
    let example = Running::start("axum", &[("MAX_STREAMS", "4")]).await;
    let addr = example.addr;
    let before = example.scrape().await;
    assert!(
        before.get("tower_sse_hub_published_total", &[]) == 0.0,
        "{:#?}",
        before.ours()
    );

    // Two countdowns (one resumed after 3: it gets 2, 1, 0) and two chat streams fill
    // the cap of 4.
    let mut countdowns = Vec::new();
    for resume in [None, Some("3")] {
        let mut client = h1_connect(addr).await;
        let mut request = get("/countdown");
        if let Some(id) = resume {
            request = request.header("last-event-id", id);
        }
        let response = timeout(GUARD, client.send(request.body(empty()).unwrap()))
            .await
            .expect("an answer to /countdown");
        assert_eq!(response.status(), StatusCode::OK);
        countdowns.push((client, response));
    }
    let mut chats = Vec::new();
    for _ in 0..2 {
        let mut client = h1_connect(addr).await;
        let response = timeout(
            GUARD,
            client.send(get("/events?topic=chat").body(empty()).unwrap()),
        )
        .await
        .expect("an answer to /events?topic=chat");
        assert_eq!(response.status(), StatusCode::OK);
        chats.push((client, response));
    }
    let during = example
        .scrape_until("4 streams are open", |s| {
            delta(&before, s, "tower_sse_streams_open", &[]) == 4.0
        })
        .await;
    assert_eq!(
        delta(&before, &during, "tower_sse_hub_subscriptions", &[]),
        2.0
    );

    // Refusals: over the cap, a client that saw 0 (204), a POST (405).
    let mut other = h1_connect(addr).await;
    let over = other
        .send(get("/events?topic=chat").body(empty()).unwrap())
        .await;
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    // (Without `Accept: text/event-stream`, so that the service answers it, not the
    // cap.)
    let stop = other
        .send(
            Request::get("/countdown")
                .header("last-event-id", "0")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(stop.status(), StatusCode::NO_CONTENT);
    let post = Request::post("/countdown")
        .header("accept", "text/event-stream")
        .body(empty())
        .unwrap();
    assert_eq!(
        other.send(post).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    other.close();

    // Ten chat messages, read by both chat clients, which then leave.
    for n in 0..10 {
        publish(addr, &format!("message {n}")).await;
    }
    let mut seen = Vec::new();
    for (client, mut response) in chats {
        seen.push(read(&mut response, Some(10)).await);
        drop(response);
        client.close();
    }
    // The countdowns, to their end.
    for (client, mut response) in countdowns {
        let countdown = read(&mut response, None).await;
        assert!(countdown.ended);
        seen.push(countdown);
        client.close();
    }
    let events: Vec<usize> = seen.iter().map(|s| s.events).collect();
    assert_eq!(events, [10, 10, 11, 3]);

    let after = example
        .scrape_until("the gauges are back", |s| gauges_back(&before, s))
        .await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let context = after.ours().join("\n");
    assert_eq!(d("tower_sse_streams_opened_total", &[]), 4.0, "{context}");
    assert_eq!(
        d(
            "tower_sse_streams_ended_total",
            &[("reason", "client_gone")]
        ),
        2.0,
        "{context}"
    );
    assert_eq!(
        d("tower_sse_streams_ended_total", &[("reason", "finished")]),
        2.0,
        "{context}"
    );
    for reason in ["limit", "stop", "method"] {
        assert_eq!(
            d("tower_sse_streams_refused_total", &[("reason", reason)]),
            1.0,
            "{reason}: {context}"
        );
    }
    assert_eq!(d("tower_sse_stream_events_total", &[]), 34.0, "{context}");
    let read_bytes: usize = seen.iter().map(|s| s.bytes).sum();
    let written = d(
        "tower_sse_stream_written_bytes_total",
        &[("compression", "none")],
    );
    let heartbeats = d("tower_sse_stream_heartbeats_total", &[]);
    let unseen = written - read_bytes as f64;
    assert!(
        unseen >= 0.0 && unseen <= 3.0 * heartbeats && unseen % 3.0 == 0.0,
        "written {written}, read {read_bytes}, heartbeats {heartbeats}: {context}"
    );
    assert_eq!(d("tower_sse_hub_published_total", &[]), 10.0, "{context}");
    assert_eq!(
        d("tower_sse_stream_first_byte_seconds_count", &[]),
        4.0,
        "{context}"
    );
}

/// `POST /publish/chat` on the axum example.
#[cfg(feature = "axum")]
async fn publish(addr: SocketAddr, text: &str) {
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::post("/publish/chat")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::copy_from_slice(text.as_bytes())))
        .unwrap();
    let response = timeout(GUARD, sender.send_request(request))
        .await
        .expect("an answer to POST /publish/chat")
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "test-browser"),
    ignore = "needs Chromium and Node: cargo test --features test-browser"
)]
async fn aircraft_gauges_return_while_browsers_come_and_go() {
    driver::require_browser_tools();
    let example = Running::start("aircraft", &[("AIRCRAFT", "12")]).await;
    let before = example.scrape().await;
    let url = format!("http://{}", example.addr);
    let icao24 = {
        let mut client = h1_connect(example.addr).await;
        let request = Request::get("/snapshot").body(empty()).unwrap();
        let response = client.send(request).await;
        let body = timeout(GUARD, response.into_body().collect())
            .await
            .expect("the whole snapshot");
        let text = String::from_utf8(body.unwrap().to_bytes().to_vec()).unwrap();
        let at = text
            .find("\"icao24\":\"")
            .expect("an aircraft in the snapshot")
            + 10;
        text[at..at + 6].to_owned()
    };

    let mut browser = driver::Browser::launch(1200, 800).await;
    let mut pages = Vec::new();
    for path in ["/", "/", &format!("/?icao24={icao24}")] {
        let page = browser.open(&format!("{url}{path}")).await;
        browser
            .expect(
                page,
                "window.aircraftMap && window.aircraftMap.events >= 3",
                "the map receives events",
                "window.aircraftMap && window.aircraftMap.events",
            )
            .await;
        pages.push(page);
    }
    // The panel shows the server's numbers: three streams open (maybe more, briefly, as
    // it read them), events and bytes flowing.
    browser
        .expect(
            pages[0],
            "serverMetrics.available && serverMetrics.open >= 3 && serverMetrics.eventsPerSecond > 0 && serverMetrics.bytesPerSecond > 0",
            "the panel shows the server's numbers",
            "JSON.stringify(serverMetrics)",
        )
        .await;
    let shown: String = browser
        .eval(
            pages[0],
            "document.getElementById('server-metrics').textContent",
        )
        .await;
    assert!(
        shown.contains("streams") && shown.contains("events/s"),
        "{shown}"
    );
    browser.screenshot(pages[0], "aircraft-metrics-panel").await;
    let during = example.scrape().await;
    assert_eq!(
        delta(&before, &during, "tower_sse_streams_open", &[]),
        3.0,
        "{:#?}",
        during.ours()
    );

    // Pages go: what each received, then the page closes.
    let mut opens = 0;
    let mut events = 0;
    for (n, page) in pages.into_iter().enumerate() {
        opens += browser.eval::<u64>(page, "aircraftMap.opens").await;
        events += browser.eval::<u64>(page, "aircraftMap.events").await;
        browser.close_page(page).await;
        let open = 2.0 - n as f64;
        example
            .scrape_until(&format!("{open} streams of the pages are open"), |s| {
                delta(&before, s, "tower_sse_streams_open", &[]) == open
            })
            .await;
    }
    // A closed page's event stream (and a scrape in flight) is aborted.
    browser.errors().await.assert_none(|failed| {
        (failed.url.contains("/events") || failed.url.contains("/metrics"))
            && failed.error.as_deref() == Some("net::ERR_ABORTED")
    });
    browser.quit().await;

    let after = example
        .scrape_until("the gauges are back", |s| gauges_back(&before, s))
        .await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let context = after.ours().join("\n");
    assert_eq!(
        d("tower_sse_streams_opened_total", &[]),
        opens as f64,
        "{context}"
    );
    assert_eq!(
        d(
            "tower_sse_streams_ended_total",
            &[("reason", "client_gone")]
        ),
        opens as f64,
        "{context}"
    );
    assert!(
        d("tower_sse_stream_events_total", &[]) >= events as f64,
        "the pages received {events} events: {context}"
    );
    assert!(
        d(
            "tower_sse_stream_written_bytes_total",
            &[("compression", "none")]
        ) > 0.0
    );
}
