//! Reading the topics' histories live: one round over the flagged topics, merged in id
//! order.

use std::sync::atomic::Ordering;
use std::task::Context;

use super::SubscriptionError;
use super::stream::{BATCH, Subscription};
use crate::Event;
use crate::hub::LagPolicy;
use crate::hub::log::GapReason;
use crate::hub::topic::Backlog;

impl Subscription {
    /// One round over the flagged topics (and those left unfinished), in id order.
    pub(super) fn read_live(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            // The watermark first: every entry up to it is appended. Several topics are
            // read only up to it, so no id passes a smaller one still being appended.
            let merge = self.members.len() > 1;
            let watermark = if merge {
                self.hub.watermark.load(Ordering::Acquire)
            } else {
                u64::MAX
            };
            let mut taken: Vec<(u64, usize, Event)> = Vec::new();
            // Entries above `bound` stay for the next round: a topic that hit the batch
            // limit may hold ids below those of another topic's later entries.
            let mut bound = u64::MAX;
            // Entries appended but not yet below the watermark: look again soon.
            let mut ordering = false;
            for index in 0..self.members.len() {
                let flagged = self.signal.take(index);
                // A publish sets the flag only after it released its locks, so the
                // watermark may already cover its entry: a taken registration counts.
                let woken = merge && {
                    let member = &self.members[index];
                    member.topic.was_taken(member.waiting)
                };
                if !(std::mem::take(&mut self.revisit[index]) || flagged || woken) {
                    continue;
                }
                let config = &self.hub.config;
                let member = &mut self.members[index];
                let mut state = member.topic.lock();
                if let Backlog::Lagged(skipped) =
                    state.backlog(member.cursor, member.live_from, config)
                {
                    let head = state.head();
                    drop(state);
                    member.topic.lagged.fetch_add(1, Ordering::Relaxed);
                    member.topic.dropped.fetch_add(skipped, Ordering::Relaxed);
                    let disconnect = config.lag_policy == LagPolicy::Disconnect;
                    self.hub.metrics.lagged(&member.topic.name, disconnect);
                    match config.lag_policy {
                        LagPolicy::Disconnect => {
                            tracing::debug!(topic = %member.topic.name, skipped, "hub subscriber lagged: its stream ends");
                            self.ended = Some(SubscriptionError::Lagged { skipped });
                            return true;
                        }
                        LagPolicy::SkipAhead => {
                            tracing::debug!(topic = %member.topic.name, skipped, "hub subscriber lagged: it skips ahead");
                            member.cursor = head;
                            member.live_from = head;
                            // What this round took from other topics is read again.
                            self.revisit.iter_mut().for_each(|r| *r = true);
                            self.ready
                                .push_back(self.hub.reset_event(GapReason::Lagged, None));
                            return true;
                        }
                    }
                }
                let head = state.head();
                let mut position = member.cursor;
                let mut count = 0;
                let mut delivered = 0;
                while position < head && count < BATCH {
                    let entry = state.entry(position).expect("position within history");
                    if entry.id > watermark {
                        ordering = true;
                        break;
                    }
                    if merge {
                        taken.push((entry.id, index, entry.event.clone()));
                    } else if entry.id > self.after {
                        self.ready.push_back(entry.event.clone());
                        delivered += 1;
                    }
                    position += 1;
                    count += 1;
                }
                if position == head {
                    if !state.is_waiting(member.waiting) {
                        member.waiting = Some(state.park(&self.signal, index));
                    }
                } else {
                    self.revisit[index] = true;
                }
                drop(state);
                if merge {
                    if count == BATCH {
                        bound = bound.min(taken.last().map_or(u64::MAX, |t| t.0));
                    }
                } else {
                    member.cursor = position;
                    if delivered > 0 {
                        member
                            .topic
                            .delivered
                            .fetch_add(delivered, Ordering::Relaxed);
                    }
                }
            }
            if merge && !taken.is_empty() {
                taken.sort_unstable_by_key(|t| t.0);
                let mut delivered = vec![0u64; self.members.len()];
                for (id, index, event) in taken {
                    if id > bound {
                        self.revisit[index] = true;
                        continue;
                    }
                    self.members[index].cursor += 1;
                    if id > self.after {
                        // Once: the reset of a shared log is in every topic, under one id.
                        self.after = id;
                        delivered[index] += 1;
                        self.ready.push_back(event);
                    }
                }
                for (member, count) in self.members.iter().zip(delivered) {
                    if count > 0 {
                        member.topic.delivered.fetch_add(count, Ordering::Relaxed);
                    }
                }
            }
            if !self.ready.is_empty() {
                return true;
            }
            if ordering {
                // An id below the watermark is still being appended elsewhere, for an
                // instant: poll again without holding the thread.
                cx.waker().wake_by_ref();
                return false;
            }
            // Nothing to yield: read again if something is left or newly flagged (the
            // entries seen may all have been known already); otherwise sleep.
            if !(self.revisit.iter().any(|r| *r) || self.signal.any()) {
                return false;
            }
        }
    }
}
