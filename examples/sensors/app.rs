//! The sensor dashboard as an application: simulated sensors, the hub they publish
//! through, and the HTTP service. `main.rs` runs it on a real clock; the browser test
//! (`tests/sensors_browser.rs`) builds the same app and steps it itself.
//!
//! Each sensor publishes `sensor-update` events on its own topic (its id). `/events`
//! reads every sensor on one connection, `/events?topic=greenhouse&topic=office` only
//! those. A page first loads `/history` (the recent readings and the id of the newest
//! event among them), then opens `/events?lastEventId=<that id>`: the hub replays anything
//! published in between, so the chart has no hole and no point twice.

#[path = "sensor.rs"]
pub(crate) mod sensor;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Event, Hub, LastEventId, Sse, SseLayer};

use sensor::{SENSORS, Sensor};

const INDEX_HTML: &str = include_str!("index.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const FEED_JS: &str = include_str!("feed.js");
const WORKER_JS: &str = include_str!("sse-worker.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// How the app is set up.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Time between two readings of one sensor.
    pub(crate) interval: Duration,
    /// How long a browser waits before it reconnects (sent as `retry:`).
    pub(crate) retry: Duration,
    /// Readings of each sensor kept for `/history` and for replay, and shown per chart.
    pub(crate) history: usize,
    /// Seed of the simulation.
    pub(crate) seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: Duration::from_secs(2),
            retry: Duration::from_secs(2),
            history: 150,
            seed: 0x5E45_0125,
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
    plant: Mutex<Plant>,
    streams: Streams,
}

/// The sensors and their recent readings. Publishing and reading `/history` both hold
/// this lock, so the history is exactly "every reading up to `last_id`".
#[derive(Debug)]
struct Plant {
    sensors: Vec<Sensor>,
    /// Per sensor: `(id, JSON)` of its recent readings, oldest first.
    history: Vec<VecDeque<(u64, String)>>,
    last_id: u64,
    /// When the app started, ms since the Unix epoch: the time of the first reading.
    started_ms: f64,
    /// Simulated time of the next reading, ms since the Unix epoch.
    clock_ms: f64,
    /// The sensor whose turn is next.
    next: usize,
}

/// Event streams served: how many are open, how many were opened.
#[derive(Debug, Default)]
struct Streams {
    opened: AtomicU64,
    open: Arc<AtomicUsize>,
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
    /// The sensors, starting now: nothing published yet, so that a chart starts when
    /// the server did.
    pub(crate) fn new(settings: Settings) -> App {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64);
        let hub = Hub::builder()
            .history_events(settings.history)
            .max_topics(SENSORS.len())
            .build();
        let plant = Plant {
            sensors: SENSORS
                .iter()
                .enumerate()
                .map(|(i, spec)| Sensor::new(spec, settings.seed.wrapping_add(i as u64)))
                .collect(),
            history: vec![VecDeque::new(); SENSORS.len()],
            // A page that loads the history before the first reading resumes after the
            // hub's starting id, which the hub knows: no `stream-reset`.
            last_id: hub.last_id(),
            started_ms: now_ms,
            clock_ms: now_ms,
            next: 0,
        };
        App {
            inner: Arc::new(Inner {
                hub,
                settings,
                plant: Mutex::new(plant),
                streams: Streams::default(),
            }),
        }
    }

    /// The next sensor in turn takes a reading and publishes it: each sensor publishes
    /// once per `interval`, spread evenly over it.
    pub(crate) fn step(&self) {
        let inner = &*self.inner;
        let mut plant = lock(&inner.plant);
        let plant = &mut *plant;
        let interval_s = inner.settings.interval.as_secs_f64();
        let index = plant.next;
        plant.next = (index + 1) % plant.sensors.len();
        let time_ms = plant.clock_ms;
        plant.clock_ms += interval_s * 1000.0 / plant.sensors.len() as f64;

        let sensor = &mut plant.sensors[index];
        sensor.step(interval_s, time_ms);
        let json = serde_json::to_string(&sensor.reading(time_ms as u64)).expect("JSON");
        let event = Event::builder()
            .event("sensor-update")
            .data(&json)
            .build()
            .expect("`sensor-update` is a valid event type");
        match inner.hub.publish(SENSORS[index].id, event) {
            Ok(published) => {
                let id = published.id().expect("an in-memory hub gives ids");
                let history = &mut plant.history[index];
                if history.len() == inner.settings.history {
                    history.pop_front();
                }
                history.push_back((id, json));
                plant.last_id = id;
            }
            Err(error) => tracing::warn!("could not publish a reading: {error}"),
        }
    }

    /// One reading of every sensor.
    #[allow(dead_code)] // used by tests/sensors_browser.rs
    pub(crate) fn round(&self) {
        for _ in 0..SENSORS.len() {
            self.step();
        }
    }

    /// Steps on a real clock, forever.
    pub(crate) async fn simulate(self) {
        let every = self.inner.settings.interval / SENSORS.len() as u32;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            self.step();
        }
    }

    /// The hub the sensors publish through.
    #[allow(dead_code)] // used by tests/sensors_browser.rs
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// When the app started, ms since the Unix epoch: where the charts start.
    #[allow(dead_code)] // used by tests/sensors_browser.rs
    pub(crate) fn started_ms(&self) -> u64 {
        lock(&self.inner.plant).started_ms as u64
    }

    /// Event streams open now.
    #[allow(dead_code)] // used by tests/sensors_browser.rs
    pub(crate) fn open_streams(&self) -> usize {
        self.inner.streams.open.load(Ordering::Acquire)
    }

    /// Event streams served since the start.
    pub(crate) fn opened_streams(&self) -> u64 {
        self.inner.streams.opened.load(Ordering::Acquire)
    }

    /// `{"lastId", "started", "interval", "keep", "sensors": [{"id", "name", "place",
    /// "readings": [{"id", "data"}]}]}`: the recent readings (up to `keep` per sensor) of
    /// the sensors `only` names (or all), as of event `lastId`; `started` is when the
    /// app started (ms since the Unix epoch), the time its first readings were taken.
    pub(crate) fn history(&self, only: &[usize]) -> String {
        let plant = lock(&self.inner.plant);
        let mut json = format!(
            "{{\"lastId\":{},\"started\":{},\"interval\":{},\"keep\":{},\"sensors\":[",
            plant.last_id,
            plant.started_ms as u64,
            self.inner.settings.interval.as_millis(),
            self.inner.settings.history,
        );
        for (n, &i) in only.iter().enumerate() {
            if n > 0 {
                json.push(',');
            }
            let spec = &SENSORS[i];
            json.push_str(&format!(
                "{{\"id\":{},\"name\":{},\"place\":{},\"readings\":[",
                serde_json::to_string(spec.id).expect("JSON"),
                serde_json::to_string(spec.name).expect("JSON"),
                serde_json::to_string(spec.place).expect("JSON"),
            ));
            for (k, (id, reading)) in plant.history[i].iter().enumerate() {
                if k > 0 {
                    json.push(',');
                }
                json.push_str(&format!("{{\"id\":{id},\"data\":{reading}}}"));
            }
            json.push_str("]}");
        }
        json.push_str("]}");
        json
    }

    /// The sensors a request names with `?topic=` (every sensor when it names none), or
    /// `Err` when it names one that does not exist.
    fn sensors_of(request: &Request<Incoming>) -> Result<Vec<usize>, ()> {
        let mut wanted = Vec::new();
        for pair in request.uri().query().unwrap_or("").split('&') {
            if let Some(topic) = pair.strip_prefix("topic=") {
                let index = SENSORS.iter().position(|s| s.id == topic).ok_or(())?;
                if !wanted.contains(&index) {
                    wanted.push(index);
                }
            }
        }
        if wanted.is_empty() {
            wanted = (0..SENSORS.len()).collect();
        }
        Ok(wanted)
    }

    /// Subscribes as the request asks: its `?topic=`s, or every sensor.
    fn subscribe(
        &self,
        request: &Request<Incoming>,
    ) -> impl futures_util::Stream<Item = impl tower_sse::IntoEvent + use<>> + Send + use<> {
        let hub = &self.inner.hub;
        // `subscribe_request` reads the topics and the Last-Event-ID the layer extracted.
        let subscription = hub.subscribe_request(request).unwrap_or_else(|_| {
            let all = SENSORS.iter().map(|s| s.id);
            hub.subscribe(all, request.extensions().get::<LastEventId>())
        });
        let streams = &self.inner.streams;
        streams.opened.fetch_add(1, Ordering::AcqRel);
        streams.open.fetch_add(1, Ordering::AcqRel);
        let open = OpenStream(streams.open.clone());
        subscription.map(move |event| {
            let _open = &open;
            event
        })
    }

    /// The HTTP service: the dashboard and its scripts (the shared worker at
    /// `/sse-worker.js`), `/history` and `/events`. Every event stream ends when
    /// `shutdown` is cancelled.
    pub(crate) fn service(
        &self,
        shutdown: CancellationToken,
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
                async move { Ok::<_, Infallible>(Sse::new(events).into_response()) }
            }))
            .map_response(|response| response.map(BodyExt::boxed_unsync));
        let app = self.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let events = events.clone();
            async move {
                let path = request.uri().path();
                if path == "/events" {
                    return match App::sensors_of(&request) {
                        Ok(_) => events.oneshot(request).await,
                        Err(()) => Ok(plain(StatusCode::NOT_FOUND, "no such sensor\n")),
                    };
                }
                if request.method() != Method::GET {
                    return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
                }
                const JS: &str = "text/javascript; charset=utf-8";
                Ok(match path {
                    "/" => file(INDEX_HTML, "text/html; charset=utf-8"),
                    "/dashboard.js" => file(DASHBOARD_JS, JS),
                    "/feed.js" => file(FEED_JS, JS),
                    "/sse-worker.js" => file(WORKER_JS, JS),
                    "/style.css" => file(STYLE_CSS, "text/css; charset=utf-8"),
                    "/history" => match App::sensors_of(&request) {
                        Ok(only) => json(app.history(&only)),
                        Err(()) => plain(StatusCode::NOT_FOUND, "no such sensor\n"),
                    },
                    _ => plain(StatusCode::NOT_FOUND, "not found\n"),
                })
            }
        });
        BoxCloneService::new(service)
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let body = Full::new(body).map_err(|never| match never {});
    let mut response = Response::new(body.boxed_unsync());
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

/// Serves `service` on `listener` (with `tower_sse::serve`'s guards) until `stop`
/// completes, then shuts down gracefully: `shutdown` ends the event streams, and the
/// server waits (up to 5 s) for every connection to finish.
pub(crate) async fn serve<S, B>(
    listener: impl Into<Arc<TcpListener>>,
    service: S,
    shutdown: CancellationToken,
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
    // One token ends both the streams (the app's layer) and the server's connections.
    let server = tower_sse::serve(listener, service)
        .graceful_shutdown(shutdown.clone())
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => return,
        () = stop => {}
    }
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close within 5 s");
    }
}
