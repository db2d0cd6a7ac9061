//! Model checks of the batching slot and ticker, with loom: the real stream state
//! (`StreamState::poll_frame` with its `Slot`) and the real clock task (`run`, its
//! `Running` guard), on loom's locks and atomics (`crate::sync`), every interleaving up
//! to the preemption bound explored.
//!
//! What stands in for tokio (`crate::sync`): the runtime runs each clock task on a
//! loom thread of its own (or, shutting down, drops it as it is spawned), and the
//! timer's every tick is due at once, so the clock ticks whenever the model schedules
//! it: before, between or after anything the streams and the producer do. Not covered
//! here: the delay itself (tokio's interval), a runtime that goes away while its clock
//! runs (rather than as it is spawned), heartbeats, shutdown and the stall watch.
//!
//! A stream's task polls by hand and parks its model thread until its waker is woken
//! ([`Task`]): an event never written leaves it parked for ever, which loom reports as
//! a deadlock.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use loom::sync::Mutex;
use loom::thread;

use super::{Shared, StreamState};
use crate::layer::settings::{Settings, Stall};
use crate::sync::Handle;
use crate::sync::check::{Task, model};

/// A batching layer's settings, with nothing else that needs a timer.
fn settings() -> Settings {
    Settings {
        heartbeat: None,
        batch_delay: Some(Duration::from_millis(10)),
        stall: Stall::Never,
        query: None,
        ..Settings::default()
    }
}

/// An inner body another thread feeds: its frames, then its end.
#[derive(Clone)]
struct Feed(Arc<Mutex<Fed>>);

#[derive(Default)]
struct Fed {
    frames: VecDeque<Bytes>,
    ended: bool,
    waker: Option<Waker>,
}

impl Feed {
    fn new(frames: &[&'static str], ended: bool) -> Self {
        Feed(Arc::new(Mutex::new(Fed {
            frames: frames
                .iter()
                .map(|f| Bytes::from_static(f.as_bytes()))
                .collect(),
            ended,
            waker: None,
        })))
    }

    /// Appends `frame` and ends the body, then wakes whoever polled it last.
    fn push_last(&self, frame: &'static str) {
        let waker = {
            let mut fed = self.0.lock().unwrap();
            fed.frames.push_back(Bytes::from_static(frame.as_bytes()));
            fed.ended = true;
            fed.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut fed = self.0.lock().unwrap();
        if let Some(frame) = fed.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if fed.ended {
            return Poll::Ready(None);
        }
        fed.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A stream of the layer `shared`, over `feed`, and its task.
struct Stream {
    state: StreamState,
    inner: Pin<Box<Option<Feed>>>,
    task: Arc<Task>,
}

impl Stream {
    fn new(shared: &Arc<Shared>, feed: &Feed) -> Self {
        Stream {
            state: StreamState::new(shared.clone(), None, None, Default::default()),
            inner: Box::pin(Some(feed.clone())),
            task: Task::new(),
        }
    }

    /// Polls the stream once: a frame it writes, or `None` at its end.
    fn poll(&mut self) -> Poll<Option<Bytes>> {
        let waker = self.task.waker();
        let mut cx = Context::from_waker(&waker);
        match self.state.poll_frame(self.inner.as_mut(), &mut cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(frame.into_data().unwrap())),
            Poll::Ready(Some(Err(error))) => panic!("the stream failed: {error}"),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Every frame the stream writes until its end, its thread parked while it waits.
    fn frames(&mut self) -> Vec<Bytes> {
        let mut frames = Vec::new();
        loop {
            match self.poll() {
                Poll::Ready(Some(frame)) => frames.push(frame),
                Poll::Ready(None) => return frames,
                Poll::Pending => self.task.wait(),
            }
        }
    }
}

/// A stream holds a frame, waiting for the tick, while another event arrives: the
/// frame waits for a tick, the event is written (with it at the tick, or at the next
/// one), nothing is lost; the stream is woken once per tick it waited for (its slot
/// is queued once), and once every clock task is over no clock is marked running and
/// no stream is left waiting.
#[test]
fn event_arriving_while_a_frame_waits_is_written_at_a_tick() {
    model(|| {
        let shared = Shared::new(settings());
        let ticker = shared.ticker.clone().unwrap();
        let feed = Feed::new(&["data: a\n\n"], false);
        let mut stream = Stream::new(&shared, &feed);
        // The first frame waits for the next tick.
        assert!(stream.poll().is_pending());
        let producer = {
            let feed = feed.clone();
            thread::spawn(move || feed.push_last("data: b\n\n"))
        };
        let frames = stream.frames();
        producer.join().unwrap();
        Handle::join_all();
        assert_eq!(frames.concat(), b"data: a\n\ndata: b\n\n");
        let (ticks, clocks, running, waiting) = ticker.observe();
        assert!(!running, "no clock task runs, the ticker must say so");
        assert_eq!(waiting, 0);
        // Every clock ends at a tick nobody waited for; each other tick woke the
        // stream once.
        assert_eq!(stream.task.wakes() as u64, ticks - clocks);
    });
}

/// A stream whose runtime is shutting down starts the clock, which is dropped as it is
/// spawned, while a stream on another runtime waits for it: the dropped clock's guard
/// clears the running mark and wakes the waiting streams, and the other stream starts
/// a clock on its own runtime and writes its frame.
#[test]
fn clock_dropped_with_its_runtime_leaves_no_running_mark() {
    model(|| {
        let shared = Shared::new(settings());
        let ticker = shared.ticker.clone().unwrap();
        let doomed = {
            let shared = shared.clone();
            thread::spawn(move || {
                Handle::shut_down();
                let feed = Feed::new(&["data: x\n\n"], false);
                let mut stream = Stream::new(&shared, &feed);
                // Waits for a tick: on the other stream's clock, or on one it starts,
                // which its runtime drops at once. (Or writes at once, if the other
                // stream's clock ticked since it took its frame.) Its task goes with its
                // runtime.
                let _ = stream.poll();
            })
        };
        let feed = Feed::new(&["data: a\n\n"], true);
        let frames = Stream::new(&shared, &feed).frames();
        doomed.join().unwrap();
        Handle::join_all();
        assert_eq!(frames.concat(), b"data: a\n\n");
        let (_, _, running, waiting) = ticker.observe();
        assert!(!running, "no clock task runs, the ticker must say so");
        assert_eq!(waiting, 0);
    });
}
