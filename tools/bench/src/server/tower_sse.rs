//! The tower-sse server, as the crate's README runs one: the `Hub` as the service under
//! `SseLayer::new()` (the default heartbeat; `batch_delay` and `compression` when
//! asked), served by `tower_sse::serve`. Subscribers name their topics in the query.
//! `Serve::max_connections` is the open-file limit less 100: the crate's default, 7/8 of
//! it, would hold 17,500 streams of 20,000.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower_sse::{Event, Hub, SseLayer, StreamCompression};

use super::options::Options;
use super::publisher::Sink;
use crate::codec::Codec;

impl Sink for Hub {
    fn publish(&self, topic: Option<usize>, event_type: Option<&'static str>, payload: String) {
        let topic = topic.map_or("idle".into(), |k| format!("topic-{k}"));
        let event = match event_type {
            None => Event::data(&payload),
            Some(t) => Event::builder().event(t).data(&payload).build().expect("a valid type"),
        };
        if let Err(err) = Hub::publish(self, &topic, event) {
            eprintln!("publish: {err}");
        }
    }

    fn subscribers(&self) -> usize {
        ["topic-0", "idle"].map(|t| self.stats(t).map_or(0, |s| s.subscribers)).iter().sum()
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

pub(super) fn start(listener: TcpListener, options: &Options) -> Result<Arc<dyn Sink>, String> {
    let hub = hub(options)?;
    let mut layer =
        SseLayer::new().batch_delay(Duration::from_millis(options.write_delay_ms.unwrap_or(0)));
    if let Some(codec) = options.compression {
        let only =
            StreamCompression::new().gzip(codec == Codec::Gzip).deflate(codec == Codec::Deflate);
        layer = layer.compression(only.br(codec == Codec::Br).zstd(codec == Codec::Zstd));
    }
    let service = tower::ServiceBuilder::new().layer(layer).service(hub.clone());
    let files = crate::proc::open_files_limit().unwrap_or(20_000).min(1 << 20) as usize;
    let server =
        tower_sse::serve(listener, service).max_connections(files.saturating_sub(100).max(100));
    tokio::spawn(async move { server.await });
    Ok(Arc::new(hub))
}
