//! The aircraft map as an application: the fleet simulator, the hub it publishes
//! through, and the HTTP service (page, snapshot, event stream; the page's files and
//! where Leaflet comes from are in `page.rs`). `main.rs` runs it on a real clock; the
//! browser test (`tests/aircraft_browser.rs`) builds the same app and drives its clock,
//! and `tests/aircraft_redis.rs` runs a simulating and a serving instance as two
//! processes on one Redis.
//!
//! Every aircraft has its own hub topic, `aircraft/<icao24>`, and its icao24 is the
//! conflation key of its reports. The map subscribes to all of them on one connection,
//! so a page that keeps up receives every id the hub hands out; `?icao24=` subscribes to
//! one. A page first loads `/snapshot` (every aircraft's latest report and the id of the
//! newest event in it), then opens `/events?lastEventId=<that id>`: the hub sends the
//! newest report of each aircraft published in between, so the page shows where every
//! aircraft is now and sees nothing twice. On a reconnect the browser sends
//! `Last-Event-ID` itself and gets the same; so does a page too slow for the feed (see
//! [`Settings::hub`]).
//!
//! The [`Simulator`] only publishes; the [`App`] only reads the hub. Each app keeps its
//! snapshot from the hub itself, with a subscription to every aircraft like a page's, so
//! an instance that does not simulate serves the same snapshot and the same stream as the
//! one that does, and a page works the same against any instance. Which hub it is (in
//! memory, or on Redis shared by several instances) is one constructor call in
//! [`Config::hub`]; nothing else knows.

#[path = "airports.rs"]
pub(crate) mod airports;
#[path = "../common/mod.rs"]
pub(crate) mod common;
#[path = "fleet.rs"]
pub(crate) mod fleet;
#[path = "page.rs"]
pub(crate) mod page;
#[path = "../common/prometheus.rs"]
pub(crate) mod prometheus;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_sse::hub::{HubBuilder, PublishError, Published, Subscription, SubscriptionError};
use tower_sse::{Event, Hub, LastEventId, Sse, SseLayer};

use airports::AIRPORTS;
use fleet::Fleet;
use page::Page;

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// How the app is set up. Every instance on one feed must have the same `aircraft` and
/// `seed`: they decide the fleet's addresses, hence the topics.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Aircraft in the fleet.
    pub(crate) aircraft: usize,
    /// Seed of the simulation: the same seed flies the same fleet.
    pub(crate) seed: u64,
    /// How long a browser waits before it reconnects (sent as `retry:`).
    pub(crate) retry: Duration,
    /// Events each aircraft's topic keeps for replay (in memory, and in Redis).
    pub(crate) history: usize,
    /// Simulated seconds per real second when the simulator runs on a real clock
    /// (`SPEED`); the page says it. Each aircraft reports once a real second whatever it is.
    pub(crate) speed: f64,
}

/// The default `SPEED`: a simulated minute each second, so that the aircraft visibly
/// move (at real speed an airliner crosses a pixel of the whole-region map in about ten
/// seconds).
pub(crate) const SPEED: f64 = 60.0;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            aircraft: 320,
            seed: 0x5EA_A1A5,
            retry: Duration::from_secs(2),
            history: 120,
            speed: SPEED,
        }
    }
}

/// How many reports of one aircraft a page may fall behind before the hub conflates:
/// five seconds of that aircraft (see [`Settings::hub`]).
pub(crate) const LIVE_WINDOW: usize = 5;

impl Settings {
    /// The hub of this app, before its storage is chosen: two minutes of history per
    /// aircraft, and room for a page that follows the whole fleet.
    ///
    /// A report is a state: an aircraft's newer report replaces all its older ones. So
    /// the simulator gives each report its aircraft's icao24 as conflation key (on the
    /// aircraft's own topic, which `?icao24=` reads alone), and the hub conflates:
    /// - a page more than [`LIVE_WINDOW`] reports behind on an aircraft (a stalled tab,
    ///   a link slower than the feed) gets, in id order, the newest report of each
    ///   aircraft it is behind on, then live ones (`LagPolicy::Conflate`): where every
    ///   aircraft is now, nothing older after it. `Disconnect` would have it replay the
    ///   very backlog it could not keep up with; `SkipAhead` would reset it, and it would
    ///   wait a second for every aircraft to report again.
    /// - a page that reconnects gets the newest report of each aircraft since its
    ///   `Last-Event-ID` (`conflate_replay`): after a minute away, one snapshot of 320
    ///   events rather than 19,200. In memory, the topics' key index serves it however
    ///   long the page was away; on Redis, within the history the streams keep (past it,
    ///   `stream-reset`, and the page reloads `/snapshot`).
    ///
    /// The window counts per topic, so per aircraft: five seconds of reports lets a page
    /// that is slow for a moment (a busy tab, a blip on its link) still get every
    /// report, and one further behind is caught up in short rather than reading on
    /// through old positions. With the default (1024 events, 17 minutes of one
    /// aircraft) a stalled tab would never be found behind. Each topic has one key,
    /// well within `conflate_keys` (default 4096).
    pub(crate) fn hub(&self) -> HubBuilder {
        Hub::builder()
            .history_events(self.history)
            .max_topics(self.aircraft.max(1))
            .queue_events(LIVE_WINDOW)
            .lag_policy(tower_sse::hub::LagPolicy::Conflate)
            .conflate_replay(true)
    }
}

/// How one instance runs, from its environment (see `main.rs`).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// `ADDR` (default `127.0.0.1:3000`): the first address it resolves to.
    #[allow(dead_code)] // bound by tests/aircraft_redis.rs
    pub(crate) addr: SocketAddr,
    /// `ADDR` as given, and every address it resolves to: `main.rs` listens on the
    /// first one it can bind.
    pub(crate) listen: common::Addr,
    /// `AIRCRAFT` (default 320) and `SPEED` (default 60); the rest as
    /// [`Settings::default`].
    pub(crate) settings: Settings,
    /// `REDIS_URL`: the Redis that instances share; without it the hub is in memory.
    pub(crate) redis_url: Option<String>,
    /// `SIMULATE`: whether this instance flies the fleet (default: yes without
    /// `REDIS_URL`, no with it, so that one instance is started with `SIMULATE=1` and
    /// any number without).
    pub(crate) simulate: bool,
}

impl Config {
    /// Reads `ADDR`, `AIRCRAFT`, `SPEED`, `REDIS_URL` and `SIMULATE`; an error is one
    /// line naming the variable, its value and what is expected.
    pub(crate) fn from_env() -> Result<Config, String> {
        let redis_url = common::var("REDIS_URL")?;
        let simulate = common::flag("SIMULATE", redis_url.is_none())?;
        let listen = common::addr()?;
        Ok(Config {
            addr: listen.first(),
            listen,
            settings: Settings {
                aircraft: common::number("AIRCRAFT", 320, 1, 100_000)?,
                speed: common::number("SPEED", SPEED, 0.0, 10_000.0)?,
                ..Settings::default()
            },
            redis_url,
            simulate,
        })
    }

    /// The hub: in memory, or with `REDIS_URL` on Redis Streams, where every instance
    /// with the same URL serves one feed. This is the only place that knows which.
    pub(crate) fn hub(&self) -> Result<Hub, String> {
        let builder = self.settings.hub();
        match &self.redis_url {
            None => Ok(builder.build()),
            Some(url) => redis_hub(builder, url, &self.settings),
        }
    }
}

/// A hub on Redis: each aircraft's topic is a stream trimmed to about as many events as
/// the in-memory history keeps; ids come from a counter all instances share.
#[cfg(feature = "redis")]
fn redis_hub(builder: HubBuilder, url: &str, settings: &Settings) -> Result<Hub, String> {
    use tower_sse::hub::RedisStorage;
    let storage = RedisStorage::new(url)
        .map_err(|error| {
            let url = common::shown("REDIS_URL", url);
            format!("{url} is not a Redis URL (for instance redis://127.0.0.1:6379/): {error}")
        })?
        .prefix("aircraft")
        .max_len(settings.history);
    Ok(builder.redis(storage).build())
}

#[cfg(not(feature = "redis"))]
fn redis_hub(_: HubBuilder, _: &str, _: &Settings) -> Result<Hub, String> {
    Err("REDIS_URL is set but this build has no Redis support; run \
         `cargo run --release -p tower-sse-examples --features redis --example aircraft`"
        .to_owned())
}

/// The app; cheap to clone. It serves whatever its hub carries and publishes nothing.
#[derive(Clone, Debug)]
pub(crate) struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    settings: Settings,
    /// `aircraft/<icao24>`, in fleet order.
    topics: Arc<[String]>,
    /// icao24 to index in the fleet.
    index: Arc<HashMap<String, usize>>,
    snapshot: Arc<Snapshot>,
    /// Keeps `snapshot`; stopped when the app goes.
    keeper: JoinHandle<()>,
    streams: Streams,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// What the app's own subscription to every aircraft received: each aircraft's latest
/// report, and the id of the newest event taken in. Events arrive in id order, so the
/// reports are exactly "every event up to `last_id`" (once an instance has seen each
/// aircraft report once, after at most one tick).
#[derive(Debug)]
struct Snapshot {
    state: Mutex<Reports>,
    /// `last_id`, for whoever waits for the snapshot to reach an id.
    progress: watch::Sender<u64>,
}

#[derive(Debug)]
struct Reports {
    /// Per aircraft, in fleet order: the id and JSON of its latest report, if any yet.
    reports: Vec<Option<(u64, String)>>,
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

/// The fleet's 24-bit addresses, in fleet order. Every instance derives them from its
/// settings, whether it simulates or not.
fn roster(settings: &Settings) -> Vec<String> {
    Fleet::new(settings.aircraft, settings.seed)
        .aircraft()
        .iter()
        .map(|a| a.icao24().to_owned())
        .collect()
}

/// The fields of an event frame as the hub sends it: `(type, data, id)`. The hub writes
/// one field per line, and a report is one line of JSON.
fn fields(frame: &[u8]) -> Option<(&str, &str, u64)> {
    let (mut kind, mut data, mut id) = ("message", "", None);
    for line in std::str::from_utf8(frame).ok()?.lines() {
        if let Some(value) = line.strip_prefix("event: ") {
            kind = value;
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = value;
        } else if let Some(value) = line.strip_prefix("id: ") {
            id = value.parse().ok();
        }
    }
    Some((kind, data, id?))
}

impl Snapshot {
    /// Takes in one event of the app's subscription.
    fn record(&self, frame: &[u8], index: &HashMap<String, usize>) {
        #[derive(Deserialize)]
        struct Key<'a> {
            icao24: &'a str,
        }
        let Some((kind, data, id)) = fields(frame) else {
            return;
        };
        let mut state = lock(&self.state);
        if kind == "position" {
            let aircraft = serde_json::from_str::<Key<'_>>(data)
                .ok()
                .and_then(|key| index.get(key.icao24));
            if let Some(&i) = aircraft {
                state.reports[i] = Some((id, data.to_owned()));
            }
        }
        // Anything else is `stream-reset`: what was missed is lost, and each aircraft's
        // next report replaces its entry; the snapshot goes on from its id.
        state.last_id = state.last_id.max(id);
        let last_id = state.last_id;
        drop(state);
        self.progress.send_replace(last_id);
    }

    fn last_id(&self) -> u64 {
        lock(&self.state).last_id
    }
}

/// Keeps `snapshot` from `subscription` (to every aircraft) for as long as the app
/// lives. If the subscription ends (it fell behind, or Redis failed while replaying),
/// subscribes again after the last id taken in, as a browser would.
async fn keep_snapshot(
    hub: Hub,
    topics: Arc<[String]>,
    index: Arc<HashMap<String, usize>>,
    snapshot: Arc<Snapshot>,
    mut subscription: Subscription,
) {
    loop {
        let ended = loop {
            match subscription.next().await {
                Some(Ok(event)) => snapshot.record(event.as_bytes(), &index),
                Some(Err(error)) => break Some(error),
                None => break None,
            }
        };
        match &ended {
            Some(error) => {
                tracing::warn!("the snapshot's subscription ended ({error}); resubscribing");
            }
            None => tracing::warn!("the snapshot's subscription ended; resubscribing"),
        }
        if !matches!(ended, Some(SubscriptionError::Lagged { .. })) {
            // Not a lag (the hub went away, or a future kind of end): give it a moment.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let after = LastEventId::new(snapshot.last_id().to_string());
        subscription = hub.subscribe(topics.iter(), Some(&after));
    }
}

impl App {
    /// Serves what `hub` carries. Create it before anything is published: its snapshot
    /// starts with the next event (and, on a shared hub, with what the storage replays).
    /// Call inside a tokio runtime.
    pub(crate) fn new(settings: Settings, hub: Hub) -> App {
        let icao24s = roster(&settings);
        let topics: Arc<[String]> = icao24s.iter().map(|i| format!("aircraft/{i}")).collect();
        let index: Arc<HashMap<String, usize>> = Arc::new(
            icao24s
                .into_iter()
                .enumerate()
                .map(|(i, icao24)| (icao24, i))
                .collect(),
        );
        let start = hub.last_id();
        let snapshot = Arc::new(Snapshot {
            state: Mutex::new(Reports {
                reports: vec![None; topics.len()],
                last_id: start,
            }),
            progress: watch::Sender::new(start),
        });
        // Subscribed here, not in the task, so that nothing published once `new`
        // returns can be missed.
        let subscription = hub.subscribe(topics.iter(), None);
        let keeper = tokio::spawn(keep_snapshot(
            hub.clone(),
            topics.clone(),
            index.clone(),
            snapshot.clone(),
            subscription,
        ));
        App {
            inner: Arc::new(Inner {
                hub,
                settings,
                topics,
                index,
                snapshot,
                keeper,
                streams: Streams::default(),
            }),
        }
    }

    /// The hub the app serves.
    #[allow(dead_code)] // used by the tests
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The 24-bit addresses of the fleet, in fleet order.
    pub(crate) fn icao24s(&self) -> Vec<String> {
        self.inner
            .topics
            .iter()
            .map(|t| t["aircraft/".len()..].to_owned())
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

    /// The id the snapshot is current as of.
    #[allow(dead_code)] // used by the tests
    pub(crate) fn snapshot_id(&self) -> u64 {
        self.inner.snapshot.last_id()
    }

    /// Waits until the snapshot has taken in event `id` (or a later one).
    #[allow(dead_code)] // used by the tests
    pub(crate) async fn snapshot_reaches(&self, id: u64) {
        let mut progress = self.inner.snapshot.progress.subscribe();
        let _ = progress.wait_for(|last| *last >= id).await;
    }

    /// `{"lastId": <id>, "speed": <SPEED>, "aircraft": [{"id": <id>, "data":
    /// <report>}, ...]}`: every aircraft's latest report (or just `only`'s), as of event
    /// `lastId`, in fleet order. An aircraft not heard from yet is left out.
    pub(crate) fn snapshot(&self, only: Option<usize>) -> String {
        let state = lock(&self.inner.snapshot.state);
        let mut json = format!(
            "{{\"lastId\":{},\"speed\":{},\"aircraft\":[",
            state.last_id, self.inner.settings.speed
        );
        let reports = state.reports.iter().enumerate();
        let wanted = reports.filter(|(i, _)| only.is_none_or(|o| o == *i));
        for (n, (id, report)) in wanted.filter_map(|(_, r)| r.as_ref()).enumerate() {
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

    /// The HTTP service: `page` and its files, `/snapshot`, `/airports.json` and
    /// `/events`. Every event stream ends when `shutdown` is cancelled.
    pub(crate) fn service(
        &self,
        shutdown: CancellationToken,
        page: Page,
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
            let page = page.clone();
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
                    "/airports.json" => json(airports_json()),
                    "/metrics" => respond(
                        StatusCode::OK,
                        prometheus::CONTENT_TYPE,
                        prometheus::render().into(),
                    ),
                    "/snapshot" => match app.followed(&request) {
                        Ok(only) => json(app.snapshot(only)),
                        Err(()) => plain(StatusCode::NOT_FOUND, "no such aircraft\n"),
                    },
                    _ => match page.file(path) {
                        Some((content_type, content)) => {
                            respond(StatusCode::OK, content_type, content)
                        }
                        None => plain(StatusCode::NOT_FOUND, "not found\n"),
                    },
                })
            }
        });
        BoxCloneService::new(service)
    }
}

/// The simulated fleet, publishing through a hub: one `position` event per aircraft per
/// tick, on the aircraft's topic. One instance of a feed runs it; it does not care who
/// serves the events, nor how many instances do.
#[derive(Debug)]
pub(crate) struct Simulator {
    hub: Hub,
    fleet: Fleet,
    /// `aircraft/<icao24>`, in fleet order.
    topics: Vec<String>,
}

/// One report as [`Simulator::tick`] published it.
#[derive(Debug)]
pub(crate) struct Sent {
    /// The report, the event's data.
    #[allow(dead_code)] // read by tests/aircraft_redis.rs
    pub(crate) json: String,
    /// Its id, now (in memory) or once stored (on Redis).
    #[allow(dead_code)] // read by tests/aircraft_redis.rs
    pub(crate) published: Published,
}

impl Simulator {
    /// The fleet of `settings`, where the simulation starts; nothing published yet.
    pub(crate) fn new(settings: &Settings, hub: Hub) -> Simulator {
        let fleet = Fleet::new(settings.aircraft, settings.seed);
        let topics = fleet
            .aircraft()
            .iter()
            .map(|a| format!("aircraft/{}", a.icao24()))
            .collect();
        Simulator { hub, fleet, topics }
    }

    /// Advances the simulation by `seconds` and publishes one `position` event per
    /// aircraft, in fleet order. Returns what was published; a report the hub refused
    /// (Redis unreachable) is left out, and the next tick brings a fresh one.
    pub(crate) fn tick(&mut self, seconds: f64) -> Vec<Sent> {
        self.fleet.step(seconds);
        let (sent, failed) = self.publish(0..self.topics.len());
        if let Some((count, error)) = failed {
            warn_unpublished(count, self.topics.len(), &error);
        }
        sent
    }

    /// Publishes the reports of the aircraft of `part` (fleet order): what was
    /// published, and how many the hub refused, with the last error.
    fn publish(&self, part: Range<usize>) -> (Vec<Sent>, Option<(usize, PublishError)>) {
        let mut sent = Vec::with_capacity(part.len());
        let mut failed = None;
        let aircraft = &self.fleet.aircraft()[part.clone()];
        for (topic, aircraft) in self.topics[part].iter().zip(aircraft) {
            let json = serde_json::to_string(&aircraft.position()).expect("a report is JSON");
            let event = Event::builder()
                .event("position")
                .data(&json)
                .build()
                .expect("`position` is a valid event type");
            match self.hub.publish_keyed(topic, aircraft.icao24(), event) {
                Ok(published) => sent.push(Sent { json, published }),
                Err(error) => {
                    let count = failed.as_ref().map_or(0, |(count, _)| *count);
                    failed = Some((count + 1, error));
                }
            }
        }
        (sent, failed)
    }

    /// Publishes the fleet at once, then, on a real clock, has every aircraft report
    /// once each `every`, `time_scale` times as long in the simulation. The fleet
    /// reports in [`SLICES`] parts spread evenly over `every`, as real aircraft report
    /// each at its own moment, so that the feed arrives steadily (a page can tell its
    /// rate within a second) rather than in one burst. Runs forever.
    pub(crate) async fn run(mut self, every: Duration, time_scale: f64) {
        self.tick(0.0);
        let size = self.topics.len();
        let slices = SLICES.min(size).max(1);
        // A late part is made up for at once (the default `Burst`), so that each
        // aircraft reports once each `every` on average, whatever the delays.
        let mut ticker = tokio::time::interval(every / slices as u32);
        ticker.tick().await;
        let seconds = every.as_secs_f64() * time_scale;
        let mut unpublished: Option<(usize, PublishError)> = None;
        for slice in (0..slices).cycle() {
            ticker.tick().await;
            let part = slice * size / slices..(slice + 1) * size / slices;
            self.fleet.step_part(part.clone(), seconds);
            if let (_, Some((count, error))) = self.publish(part) {
                let before = unpublished.as_ref().map_or(0, |(count, _)| *count);
                unpublished = Some((before + count, error));
            }
            // At most one warning for each round of the fleet.
            if slice + 1 == slices
                && let Some((count, error)) = unpublished.take()
            {
                warn_unpublished(count, size, &error);
            }
        }
    }
}

/// The parts each round of reports comes in when the simulator runs on a real clock.
pub(crate) const SLICES: usize = 20;

fn warn_unpublished(count: usize, of: usize, error: &PublishError) {
    tracing::warn!("could not publish {count} of {of} reports: {error}");
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
    let body = Full::new(body).map_err(|never| match never {});
    let mut response = Response::new(body.boxed_unsync());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
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
/// server waits (up to 5 s) for every connection to finish. A caller that keeps a clone of the listener keeps
/// the port open, and may serve again on it.
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
