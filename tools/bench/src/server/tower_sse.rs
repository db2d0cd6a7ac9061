//! The tower-sse server, as the crate's README runs one: the `Hub` as the service under
//! `SseLayer::new()` (the default heartbeat; `batch_delay` and `compression` when
//! asked), served by `tower_sse::serve`. Subscribers name their topics in the query.
//! `Serve::max_connections` is the open-file limit less 100: the crate's default, 7/8 of
//! it, would hold 17,500 streams of 20,000.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower::Layer;
use tower_sse::{Event, Hub, SseLayer, StreamCompression};

use super::options::Options;
use super::publisher::Sink;
use crate::codec::Codec;

impl Sink for Hub {
    fn publish(&self, topic: Option<usize>, event_type: Option<&'static str>, payload: String) {
        let topic = topic.map_or("idle".into(), |k| format!("topic-{k}"));
        let typed = |t| Event::builder().event(t).data(&payload).build();
        let event = event_type.map_or(Ok(Event::data(&payload)), typed);
        if let Err(err) = Hub::publish(self, &topic, event.expect("an event")) {
            eprintln!("publish: {err}");
        }
    }

    fn subscribers(&self) -> usize {
        let count = |topic| self.stats(topic).map_or(0, |s| s.subscribers);
        count("topic-0") + count("idle")
    }
}

fn hub(options: &Options) -> Result<Hub, String> {
    let builder = Hub::builder().max_topics(options.topics.max(64) as usize);
    match &options.redis {
        None => Ok(builder.build()),
        #[cfg(feature = "redis")]
        Some(url) => {
            let storage = tower_sse::hub::RedisStorage::new(url);
            let storage = storage.map_err(|e| format!("redis: {e}"))?.prefix("bench");
            Ok(builder.redis(storage).build())
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => Err("--redis needs the `redis` feature".into()),
    }
}

pub(super) fn start(listener: TcpListener, options: &Options) -> Result<Arc<dyn Sink>, String> {
    let hub = hub(options)?;
    let delay = Duration::from_millis(options.write_delay_ms.unwrap_or(0));
    let mut layer = SseLayer::new().batch_delay(delay);
    if let Some(codec) = options.compression {
        let only = StreamCompression::new().gzip(codec == Codec::Gzip);
        let only = only.deflate(codec == Codec::Deflate).br(codec == Codec::Br);
        layer = layer.compression(only.zstd(codec == Codec::Zstd));
    }
    let service = layer.layer(hub.clone());
    let files = crate::proc::open_files_limit().unwrap_or(20_000);
    let max = (files.min(1 << 20) as usize).saturating_sub(100).max(100);
    let server = tower_sse::serve(listener, service).max_connections(max);
    tokio::spawn(async move { server.await });
    Ok(Arc::new(hub))
}
