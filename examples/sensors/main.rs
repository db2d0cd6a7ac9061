//! Simulated temperature and humidity sensors streamed as `sensor-update` events.
//!
//! ```text
//! cargo run --example sensors
//! curl -N http://127.0.0.1:3000/events
//! ```
//!
//! `ADDR` sets the listen address (default `127.0.0.1:3000`), `INTERVAL_MS` the time
//! between readings of each sensor (default 2000).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::{Event, Shutdown, SseLayer};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One simulated sensor: values drift by a small random walk pulled back to a set point.
struct Sensor {
    id: &'static str,
    temperature: f64,
    humidity: f64,
    seed: u64,
}

impl Sensor {
    fn new(id: &'static str, temperature: f64, humidity: f64, seed: u64) -> Self {
        Sensor {
            id,
            temperature,
            humidity,
            seed,
        }
    }

    /// A uniform value in [-1, 1) from a xorshift generator.
    fn noise(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % 20_000) as f64 / 10_000.0 - 1.0
    }

    fn step(&mut self, set_temperature: f64, set_humidity: f64) {
        self.temperature += 0.1 * (set_temperature - self.temperature) + 0.3 * self.noise();
        self.humidity += 0.1 * (set_humidity - self.humidity) + 0.8 * self.noise();
        self.humidity = self.humidity.clamp(0.0, 100.0);
    }

    fn event(&self) -> Event {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let json = serde_json::json!({
            "sensor": self.id,
            "temperature": (self.temperature * 10.0).round() / 10.0,
            "humidity": (self.humidity * 10.0).round() / 10.0,
            "time": millis as u64,
        });
        Event::builder()
            .event("sensor-update")
            .data(&json.to_string())
            .build()
            .expect("a fixed event type is valid")
    }
}

async fn simulate(readings: broadcast::Sender<Event>, interval: Duration) {
    let mut sensors = [
        Sensor::new("greenhouse", 27.0, 70.0, 0x9E37_79B9_7F4A_7C15),
        Sensor::new("server-room", 21.0, 40.0, 0xD1B5_4A32_D192_ED03),
        Sensor::new("cold-store", 4.0, 85.0, 0x8CB9_2BA7_2F3D_8DD7),
    ];
    let set_points = [(27.0, 70.0), (21.0, 40.0), (4.0, 85.0)];
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        for (sensor, (t, h)) in sensors.iter_mut().zip(set_points) {
            sensor.step(t, h);
            // No subscriber is not an error: the reading is simply not sent.
            let _ = readings.send(sensor.event());
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()
        .expect("ADDR is a socket address");
    let interval = std::env::var("INTERVAL_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(2), Duration::from_millis);

    let (readings, _) = broadcast::channel(64);
    tokio::spawn(simulate(readings.clone(), interval));

    let shutdown = Shutdown::new();
    let events = ServiceBuilder::new()
        .layer(SseLayer::new().graceful_shutdown(shutdown.clone()))
        .service(service_fn(move |_request: Request<Incoming>| {
            // A reader that falls behind skips what it missed.
            let stream =
                BroadcastStream::new(readings.subscribe()).filter_map(|r| async { r.ok() });
            async move { Ok::<_, Infallible>(stream) }
        }))
        .map_response(|response| response.map(|body| body.boxed_unsync()));
    let app = service_fn(move |request: Request<Incoming>| {
        let events = events.clone();
        async move {
            if request.uri().path() == "/events" {
                events.oneshot(request).await
            } else {
                Ok(not_found())
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "sensors: streaming at http://{}/events",
        listener.local_addr()?
    );
    let graceful = GracefulShutdown::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let service = TowerToHyperService::new(app.clone());
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(socket), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut ctrl_c => break,
        }
    }
    println!("sensors: shutting down");
    shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

fn not_found() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")).boxed_unsync());
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
