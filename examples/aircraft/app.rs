//! The aircraft map as an application: the fleet, the hub it publishes through, and the
//! HTTP service (page, snapshot, event stream). `main.rs` runs it on a real clock; the
//! browser test (`tests/aircraft_browser.rs`) builds the same app and drives its clock.
//!
//! Every aircraft has its own hub topic, `aircraft/<icao24>`. The map subscribes to all
//! of them on one connection, so the ids it receives are every id the hub hands out;
//! `?icao24=` subscribes to one. A page first loads `/snapshot` (every aircraft's latest
//! report and the id of the newest event in it), then opens `/events?lastEventId=<that
//! id>`: the hub replays whatever was published in between, so the page misses nothing
//! and sees nothing twice. On a reconnect the browser sends `Last-Event-ID` itself.

#[path = "airports.rs"]
pub(crate) mod airports;
#[path = "fleet.rs"]
pub(crate) mod fleet;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Event, Hub, LastEventId, Shutdown, SseLayer};

use airports::AIRPORTS;
use fleet::Fleet;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
const SEA_GEOJSON: &str = include_str!("sea.geojson");

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How the app is set up.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Aircraft in the fleet.
    pub(crate) aircraft: usize,
    /// Seed of the simulation: the same seed flies the same fleet.
    pub(crate) seed: u64,
    /// How long a browser waits before it reconnects (sent as `retry:`).
    pub(crate) retry: Duration,
    /// Events each aircraft's topic keeps for replay.
    pub(crate) history: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            aircraft: 320,
            seed: 0x5EA_A1A5,
            retry: Duration::from_secs(2),
            history: 120,
        }
    }
}

/// The app; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    settings: Settings,
    /// `aircraft/<icao24>`, in fleet order.
    topics: Vec<String>,
    /// icao24 to index in the fleet.
    index: HashMap<String, usize>,
    sky: Mutex<Sky>,
    streams: Streams,
}

/// The fleet and what was last published for each aircraft. Publishing and reading a
/// snapshot both hold this lock, so a snapshot is exactly "every event up to `last_id`".
#[derive(Debug)]
struct Sky {
    fleet: Fleet,
    /// Per aircraft: the id and JSON of its latest report.
    reports: Vec<(u64, String)>,
    last_id: u64,
}

/// Event streams served: how many are open, and where each one started.
#[derive(Debug, Default)]
struct Streams {
    opened: AtomicU64,
    open: Arc<AtomicUsize>,
    starts: Mutex<VecDeque<StreamStart>>,
}

/// Where one event stream started.
#[derive(Clone, Debug)]
#[allow(dead_code)] // read by tests/aircraft_browser.rs
pub(crate) struct StreamStart {
    /// The `Last-Event-ID` (header or `lastEventId` query) it resumed after, if any.
    pub(crate) resumed_after: Option<String>,
    /// The hub's newest id when it subscribed: events after `resumed_after` up to this
    /// one were replayed from history.
    pub(crate) newest: u64,
    /// The aircraft it follows, or `None` for all of them.
    pub(crate) icao24: Option<String>,
}

/// Decrements the open-stream count when the stream it rides on is dropped.
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl App {
    /// A new fleet, whose first reports are published at once.
    pub(crate) fn new(settings: Settings) -> App {
        let fleet = Fleet::new(settings.aircraft, settings.seed);
        let topics: Vec<String> = fleet
            .aircraft()
            .iter()
            .map(|a| format!("aircraft/{}", a.icao24()))
            .collect();
        let index = fleet
            .aircraft()
            .iter()
            .enumerate()
            .map(|(i, a)| (a.icao24().to_owned(), i))
            .collect();
        let hub = Hub::builder()
            .history_events(settings.history)
            .max_topics(topics.len())
            .build();
        let sky = Sky {
            reports: vec![(0, String::new()); fleet.aircraft().len()],
            fleet,
            last_id: 0,
        };
        let app = App {
            inner: Arc::new(Inner {
                hub,
                settings,
                topics,
                index,
                sky: Mutex::new(sky),
                streams: Streams::default(),
            }),
        };
        app.tick(0.0);
        app
    }

    /// Advances the simulation by `seconds` and publishes one `position` event per
    /// aircraft.
    pub(crate) fn tick(&self, seconds: f64) {
        let inner = &*self.inner;
        let mut sky = lock(&inner.sky);
        let sky = &mut *sky;
        sky.fleet.step(seconds);
        for (i, aircraft) in sky.fleet.aircraft().iter().enumerate() {
            let json = serde_json::to_string(&aircraft.position()).expect("a report is JSON");
            let event = Event::builder()
                .event("position")
                .data(&json)
                .build()
                .expect("`position` is a valid event type");
            match inner.hub.publish(&inner.topics[i], event) {
                Ok(published) => {
                    // The in-memory hub numbers every event at once.
                    let id = published.id().expect("an in-memory hub gives ids");
                    sky.reports[i] = (id, json);
                    sky.last_id = id;
                }
                Err(error) => eprintln!("aircraft: could not publish: {error}"),
            }
        }
    }

    /// Ticks every `every` on a real clock, each tick `time_scale` times as long in the
    /// simulation. Runs forever.
    pub(crate) async fn simulate(self, every: Duration, time_scale: f64) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            self.tick(every.as_secs_f64() * time_scale);
        }
    }

    /// The hub the fleet publishes through.
    #[allow(dead_code)] // used by tests/aircraft_browser.rs
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The 24-bit addresses of the fleet, in fleet order.
    pub(crate) fn icao24s(&self) -> Vec<String> {
        lock(&self.inner.sky)
            .fleet
            .aircraft()
            .iter()
            .map(|a| a.icao24().to_owned())
            .collect()
    }

    /// Event streams open now.
    #[allow(dead_code)] // used by tests/aircraft_browser.rs
    pub(crate) fn open_streams(&self) -> usize {
        self.inner.streams.open.load(Ordering::Acquire)
    }

    /// Event streams served since the start.
    pub(crate) fn opened_streams(&self) -> u64 {
        self.inner.streams.opened.load(Ordering::Acquire)
    }

    /// Where the most recent event streams (up to 100) started, oldest first.
    #[allow(dead_code)] // used by tests/aircraft_browser.rs
    pub(crate) fn stream_starts(&self) -> Vec<StreamStart> {
        lock(&self.inner.streams.starts).iter().cloned().collect()
    }

    /// `{"lastId": <newest id>, "aircraft": [{"id": <id>, "data": <report>}, ...]}`:
    /// every aircraft's latest report (or just `only`'s), as of event `lastId`.
    pub(crate) fn snapshot(&self, only: Option<usize>) -> String {
        let sky = lock(&self.inner.sky);
        let mut json = format!("{{\"lastId\":{},\"aircraft\":[", sky.last_id);
        let reports = sky.reports.iter().enumerate();
        for (n, (_, (id, report))) in reports
            .filter(|(i, _)| only.is_none_or(|o| o == *i))
            .enumerate()
        {
            if n > 0 {
                json.push(',');
            }
            json.push_str(&format!("{{\"id\":{id},\"data\":{report}}}"));
        }
        json.push_str("]}");
        json
    }

    /// The aircraft a request asks to follow: `Ok(None)` for all of them, `Err` for an
    /// `icao24` that is not in the fleet.
    fn followed(&self, request: &Request<Incoming>) -> Result<Option<usize>, ()> {
        let query = request.uri().query().unwrap_or("");
        let wanted = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("icao24="));
        match wanted {
            None => Ok(None),
            Some(icao24) => {
                let icao24 = icao24.to_ascii_lowercase();
                self.inner.index.get(&icao24).copied().map(Some).ok_or(())
            }
        }
    }

    /// Subscribes to the topics a request asks for, resuming after its last event id.
    fn subscribe(
        &self,
        request: &Request<Incoming>,
    ) -> impl futures_util::Stream<Item = impl tower_sse::IntoEvent + use<>> + Send + use<> {
        let inner = &*self.inner;
        let followed = self.followed(request).ok().flatten();
        let topics = match followed {
            Some(i) => &inner.topics[i..=i],
            None => &inner.topics[..],
        };
        let last_event_id = request.extensions().get::<LastEventId>();
        let subscription = inner.hub.subscribe(topics, last_event_id);

        let streams = &inner.streams;
        streams.opened.fetch_add(1, Ordering::AcqRel);
        streams.open.fetch_add(1, Ordering::AcqRel);
        let open = OpenStream(streams.open.clone());
        let mut starts = lock(&streams.starts);
        if starts.len() == 100 {
            starts.pop_front();
        }
        starts.push_back(StreamStart {
            resumed_after: last_event_id.map(|id| id.as_str().to_owned()),
            newest: inner.hub.last_id(),
            icao24: followed.map(|i| inner.topics[i]["aircraft/".len()..].to_owned()),
        });
        subscription.map(move |event| {
            let _open = &open;
            event
        })
    }

    /// The HTTP service: the page and its files, `/snapshot`, `/airports.json` and
    /// `/events`. Every event stream ends when `shutdown` is triggered.
    pub(crate) fn service(
        &self,
        shutdown: Shutdown,
    ) -> BoxCloneService<Request<Incoming>, Response<Body>, Infallible> {
        let app = self.clone();
        let events = ServiceBuilder::new()
            .layer(
                SseLayer::new()
                    .retry(self.inner.settings.retry)
                    .graceful_shutdown(shutdown),
            )
            .service(service_fn(move |request: Request<Incoming>| {
                let events = app.subscribe(&request);
                async move { Ok::<_, Infallible>(events) }
            }))
            .map_response(|response| response.map(BodyExt::boxed_unsync));
        let app = self.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let events = events.clone();
            async move {
                let path = request.uri().path();
                if path == "/events" {
                    return match app.followed(&request) {
                        Ok(_) => events.oneshot(request).await,
                        Err(()) => Ok(plain(StatusCode::NOT_FOUND, "no such aircraft\n")),
                    };
                }
                if request.method() != Method::GET {
                    return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
                }
                Ok(match path {
                    "/" => file(INDEX_HTML, "text/html; charset=utf-8"),
                    "/app.js" => file(APP_JS, "text/javascript; charset=utf-8"),
                    "/style.css" => file(STYLE_CSS, "text/css; charset=utf-8"),
                    "/sea.geojson" => file(SEA_GEOJSON, "application/geo+json"),
                    "/airports.json" => json(airports_json()),
                    "/snapshot" => match app.followed(&request) {
                        Ok(only) => json(app.snapshot(only)),
                        Err(()) => plain(StatusCode::NOT_FOUND, "no such aircraft\n"),
                    },
                    _ => plain(StatusCode::NOT_FOUND, "not found\n"),
                })
            }
        });
        BoxCloneService::new(service)
    }
}

/// The airports, for the map.
fn airports_json() -> String {
    #[derive(Serialize)]
    struct Entry {
        iata: &'static str,
        icao: &'static str,
        city: &'static str,
        lat: f64,
        lon: f64,
    }
    let entries: Vec<Entry> = AIRPORTS
        .iter()
        .map(|a| Entry {
            iata: a.iata,
            icao: a.icao,
            city: a.city,
            lat: a.lat,
            lon: a.lon,
        })
        .collect();
    serde_json::to_string(&entries).expect("airports are JSON")
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn file(content: &'static str, content_type: &'static str) -> Response<Body> {
    respond(
        StatusCode::OK,
        content_type,
        Bytes::from_static(content.as_bytes()),
    )
}

fn json(content: String) -> Response<Body> {
    respond(StatusCode::OK, "application/json", Bytes::from(content))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

/// Serves `service` on `listener` until `stop` completes, then shuts down gracefully:
/// `shutdown` ends the event streams, and the server waits (up to 5 s) for every
/// connection to finish. The listener stays open, so the caller may serve again on it.
pub(crate) async fn serve<S, B>(
    listener: &TcpListener,
    service: S,
    shutdown: Shutdown,
    stop: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let service = TowerToHyperService::new(service.clone());
                let connection = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut stop => break,
        }
    }
    shutdown.trigger();
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("aircraft: some connections did not close within 5 s");
    }
}
