//! Settings shared by the layer and the plain response type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::event::write_retry;
use crate::report::OnEnd;
use crate::{Event, KeepAlive, Shutdown, StreamEnd};

/// Largest frame the body hands to the connection when events are coalesced.
pub(crate) const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// What every stream of a layer, or one [`Sse`](crate::Sse) response, is served with.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) keep_alive: Option<KeepAlive>,
    pub(crate) retry: Option<Bytes>,
    pub(crate) max_frame: usize,
    pub(crate) on_end: Option<OnEnd>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) shutdown_event: Option<Bytes>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            keep_alive: Some(KeepAlive::new()),
            retry: None,
            max_frame: DEFAULT_MAX_FRAME,
            on_end: None,
            shutdown: None,
            shutdown_event: None,
        }
    }
}

impl Config {
    pub(crate) fn set_retry(&mut self, retry: Duration) {
        let mut buf = Vec::with_capacity(32);
        write_retry(&mut buf, retry);
        buf.push(b'\n');
        self.retry = Some(Bytes::from(buf));
    }

    pub(crate) fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.max(1);
    }

    pub(crate) fn set_on_end<F>(&mut self, on_end: F)
    where
        F: Fn(&StreamEnd) + Send + Sync + 'static,
    {
        self.on_end = Some(Arc::new(on_end));
    }

    pub(crate) fn set_shutdown_event(&mut self, event: Event) {
        self.shutdown_event = Some(event.into_bytes());
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("keep_alive", &self.keep_alive)
            .field("retry", &self.retry)
            .field("max_frame", &self.max_frame)
            .field("on_end", &self.on_end.as_ref().map(|_| ".."))
            .field("shutdown", &self.shutdown)
            .field("shutdown_event", &self.shutdown_event)
            .finish()
    }
}
