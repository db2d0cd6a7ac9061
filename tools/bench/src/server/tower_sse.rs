//! The tower-sse server, as the crate's README runs one: the `Hub` as the service under
//! `SseLayer::new()` (default heartbeat; `batch_delay` and `compression` when asked),
//! served by `tower_sse::serve`. Subscribers name their topics in the query.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower_sse::{Compression, Event, Hub, SseLayer};

use super::{IDLE_TOPIC, Options, Sink};
use crate::codec::Codec;

struct HubSink(Hub);

impl Sink for HubSink {
    fn publish(&self, topic: Option<usize>, event_type: Option<&str>, payload: String) {
        let topic = topic.map_or(IDLE_TOPIC.to_string(), |k| format!("topic-{k}"));
        let event = match event_type {
            None => Event::data(&payload),
            Some(t) => Event::builder()
                .event(t)
                .data(&payload)
                .build()
                .expect("a valid type"),
        };
        if let Err(err) = self.0.publish(&topic, event) {
            eprintln!("publish: {err}");
        }
    }

    fn subscribers(&self) -> usize {
        let count = |topic: &str| self.0.stats(topic).map_or(0, |s| s.subscribers);
        count("topic-0") + count(IDLE_TOPIC)
    }
}

fn hub(options: &Options) -> Result<Hub, String> {
    let builder = Hub::builder().max_topics(options.topics.max(64) as usize);
    match &options.redis {
        None => Ok(builder.build()),
        #[cfg(feature = "redis")]
        Some(url) => {
            let storage =
                tower_sse::hub::RedisStorage::new(url).map_err(|e| format!("redis: {e}"))?;
            Ok(builder.redis(storage.prefix("bench")).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature".into()),
    }
}

fn compression(options: &Options) -> Option<Compression> {
    let codec = options.compression?;
    let mut compression = Compression::new()
        .gzip(codec == Codec::Gzip)
        .deflate(codec == Codec::Deflate)
        .br(codec == Codec::Br)
        .zstd(codec == Codec::Zstd);
    if let Some(level) = options.compression_level {
        compression = compression.level(level);
    }
    if let Some(window) = options.compression_window {
        compression = compression.window(window);
    }
    Some(compression)
}

/// Serves `listener` with `tower_sse::serve`.
pub(super) fn start(listener: TcpListener, options: &Options) -> Result<Arc<dyn Sink>, String> {
    let hub = hub(options)?;
    let delay = Duration::from_millis(options.write_delay_ms.unwrap_or(0));
    let mut layer = SseLayer::new().batch_delay(delay);
    if let Some(compression) = compression(options) {
        layer = layer.compression(compression);
    }
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(hub.clone());
    let limit = crate::proc::open_files_limit()
        .unwrap_or(20_000)
        .min(1 << 20) as usize;
    let max = options
        .max_connections
        .unwrap_or(limit.saturating_sub(100).max(100));
    tokio::spawn(
        tower_sse::serve(listener, service)
            .max_connections(max)
            .into_future(),
    );
    Ok(Arc::new(HubSink(hub)))
}
