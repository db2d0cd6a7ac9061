//! What a resuming subscriber missed, replayed from the shared log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use super::stream::BATCH;
use crate::Event;
use crate::hub::log::{GapReason, Page, PageFuture, SharedLog};

/// Most events read from the shared log per topic and request while replaying.
pub(crate) const PAGE: usize = 128;

/// What a resuming subscriber missed, read from the shared log a page per topic at a
/// time and merged in id order: at most [`PAGE`] events per topic are held at once.
pub(super) struct Replay {
    pub(super) upto: u64,
    sources: Vec<Source>,
}

struct Source {
    topic: Arc<str>,
    /// The last id fetched.
    after: u64,
    buffer: VecDeque<(u64, Event)>,
    /// The log has nothing more up to `upto`.
    done: bool,
    // In a mutex only to keep the subscription `Sync`; reached through `&mut`.
    fetch: Mutex<Option<PageFuture>>,
}

impl Replay {
    pub(super) fn new(topics: impl Iterator<Item = Arc<str>>, after: u64, upto: u64) -> Self {
        Replay {
            upto,
            sources: topics
                .map(|topic| Source {
                    topic,
                    after,
                    buffer: VecDeque::new(),
                    done: false,
                    fetch: Mutex::new(None),
                })
                .collect(),
        }
    }

    /// Moves up to [`BATCH`] replayed events into `ready`, numbered. `Ready(Ok(upto))`
    /// once everything is replayed; `Ready(Err(reason))` on a gap; `Pending` otherwise
    /// (with events in `ready`, or waiting for a page).
    pub(super) fn poll(
        &mut self,
        log: &dyn SharedLog,
        cx: &mut Context<'_>,
        ready: &mut VecDeque<Event>,
    ) -> Poll<Result<u64, GapReason>> {
        if let Some(reason) = self.read_ahead(log, cx) {
            return Poll::Ready(Err(reason));
        }
        let before = ready.len();
        // Merge while every topic that may hold more has some in hand.
        let mut moved = 0;
        while moved < BATCH {
            let mut next: Option<usize> = None;
            for (index, source) in self.sources.iter().enumerate() {
                match source.buffer.front() {
                    // Its next page may hold smaller ids: wait for it.
                    None if !source.done => {
                        next = None;
                        moved = BATCH;
                        break;
                    }
                    None => {}
                    Some(&(id, _)) if next.is_none_or(|n| id < self.sources[n].buffer[0].0) => {
                        next = Some(index);
                    }
                    Some(_) => {}
                }
            }
            let Some(index) = next else {
                if moved == BATCH {
                    break;
                }
                crate::metrics::hub_replayed((ready.len() - before) as u64, true);
                return Poll::Ready(Ok(self.upto));
            };
            let (id, event) = self.sources[index].buffer.pop_front().expect("a front");
            ready.push_back(event.with_trusted_id(itoa::Buffer::new().format(id)));
            moved += 1;
        }
        crate::metrics::hub_replayed((ready.len() - before) as u64, true);
        // Ask for the pages the merge made due before yielding what it took.
        match self.read_ahead(log, cx) {
            Some(reason) => Poll::Ready(Err(reason)),
            None => Poll::Pending,
        }
    }

    /// Asks for a topic's next page once fewer than half a page of it is left, so that
    /// the pages of all topics are read ahead together (a topic holds at most one and a
    /// half pages at once), and takes in the pages that arrived. Returns a gap.
    fn read_ahead(&mut self, log: &dyn SharedLog, cx: &mut Context<'_>) -> Option<GapReason> {
        for source in &mut self.sources {
            let fetch = source
                .fetch
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            loop {
                if fetch.is_none() && !source.done && source.buffer.len() < PAGE / 2 {
                    *fetch = Some(log.page(&source.topic, source.after, self.upto, PAGE));
                }
                let Some(future) = fetch else { break };
                let Poll::Ready(page) = future.as_mut().poll(cx) else {
                    break;
                };
                *fetch = None;
                match page {
                    Page::Gap(reason) => return Some(reason),
                    Page::Events { events, next } => {
                        match next {
                            Some(next) => source.after = next,
                            None => source.done = true,
                        }
                        source.buffer.extend(events);
                    }
                }
            }
        }
        None
    }
}
