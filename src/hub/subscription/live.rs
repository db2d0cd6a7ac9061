//! Reading the topics' histories live: one round over the flagged topics, merged in id
//! order; and what a subscriber that fell behind gets under its [`LagPolicy`].

use std::sync::atomic::Ordering;
use std::task::Context;

use super::SubscriptionError;
use super::stream::{BATCH, Member, Subscription};
use crate::Event;
use crate::hub::LagPolicy;
use crate::hub::log::GapReason;
use crate::hub::member_set;
use crate::hub::topic::Backlog;

/// What one member's lag came to.
enum Lag {
    /// The stream ends.
    Ended,
    /// It skipped ahead: the reset event is ready.
    Reset,
    /// It has what it missed in short, to read before the ring.
    Conflated,
}

impl Subscription {
    /// One round over the flagged topics (and those left unfinished), in id order.
    pub(super) fn read_live(&mut self, cx: &mut Context<'_>) -> bool {
        'round: loop {
            // The watermark first: every entry up to it is appended. Several topics are
            // read only up to it, so no id passes a smaller one still being appended.
            let merge = self.members.len() > 1;
            let watermark = if merge {
                self.hub.watermark.load(Ordering::Acquire)
            } else {
                u64::MAX
            };
            // `(id, member, event, from its catch-up)`.
            let mut taken: Vec<(u64, usize, Event, bool)> = Vec::new();
            // Entries above `bound` stay for the next round: a topic that hit the batch
            // limit may hold ids below those of another topic's later entries.
            let mut bound = u64::MAX;
            // Entries appended but not yet below the watermark: look again soon.
            let mut ordering = false;
            // A publish took parked registrations and has not flagged them all yet: one
            // may be this subscription's, for an entry up to the watermark, which must
            // be read in this round. (Read after the watermark: at zero, every such
            // entry's topic is flagged.)
            let unflagged = merge && self.hub.flagging.load(Ordering::Acquire) != 0;
            for word in 0..self.revisit.words().len() {
                let mut visit = self.revisit.take_word(word) | self.signal.take(word);
                if unflagged {
                    visit |= self.taken_in(word);
                }
                for index in member_set::indexes(word, visit) {
                    let member = &mut self.members[index];
                    let mut state = member.topic.lock();
                    if let Backlog::Lagged(skipped) =
                        state.backlog(member.cursor, member.live_from, &self.hub.config)
                    {
                        drop(state);
                        match self.lagged(index, skipped) {
                            Lag::Ended | Lag::Reset => return true,
                            Lag::Conflated => {
                                // What this round took from other topics is read again,
                                // merged with what this one missed.
                                self.revisit.fill();
                                continue 'round;
                            }
                        }
                    }
                    let head = state.head();
                    let mut position = member.cursor;
                    let mut count = 0;
                    let mut delivered = 0;
                    let mut above = false;
                    // First what it missed in short, if anything (ids below the ring's from
                    // its cursor on), then the ring.
                    for (id, _, event) in member.catchup.iter().take(BATCH) {
                        if *id > watermark {
                            above = true;
                            break;
                        }
                        if merge {
                            taken.push((*id, index, event.clone(), true));
                        } else if *id > self.after {
                            self.ready.push_back(event.clone());
                            delivered += 1;
                        }
                        count += 1;
                    }
                    let rest = member.catchup.len() - count;
                    if !merge && count > 0 {
                        member.catchup.drain(..count);
                    }
                    while rest == 0 && position < head && count < BATCH {
                        let entry = state.entry(position).expect("position within history");
                        if entry.id > watermark {
                            above = true;
                            break;
                        }
                        if merge {
                            taken.push((entry.id, index, entry.event.clone(), false));
                        } else {
                            if entry.id > self.after {
                                self.ready.push_back(entry.event.clone());
                                delivered += 1;
                            }
                            member.read = entry.id;
                        }
                        position += 1;
                        count += 1;
                    }
                    ordering |= above;
                    if position == head && rest == 0 {
                        if !state.is_waiting(member.waiting) {
                            member.waiting = Some(state.park(&self.signal, index));
                        }
                    } else {
                        self.revisit.insert(index);
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
            }
            if merge && !taken.is_empty() {
                taken.sort_unstable_by_key(|t| t.0);
                // Deliveries are counted a run of one topic's events at a time: one add
                // per round in most rounds, and no pass over every member.
                let mut run: Option<(usize, u64)> = None;
                for (id, index, event, caught) in taken {
                    if id > bound {
                        self.revisit.insert(index);
                        continue;
                    }
                    let member = &mut self.members[index];
                    if caught {
                        member.catchup.pop_front();
                    } else {
                        member.cursor += 1;
                        member.read = id;
                    }
                    if id > self.after {
                        // Once: the reset of a shared log is in every topic, under one id.
                        self.after = id;
                        self.ready.push_back(event);
                        run = match run {
                            Some((last, count)) if last == index => Some((index, count + 1)),
                            ended => {
                                self.count_delivered(ended);
                                Some((index, 1))
                            }
                        };
                    }
                }
                self.count_delivered(run);
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
            if self.revisit.is_empty() && !self.signal.any() {
                return false;
            }
        }
    }

    /// Counts `delivered` events of member `index` in its topic's statistics.
    fn count_delivered(&self, run: Option<(usize, u64)>) {
        if let Some((index, delivered)) = run {
            let topic = &self.members[index].topic;
            topic.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
    }

    /// Members of word `word` (see [`MemberSet`](crate::hub::member_set::MemberSet))
    /// whose registration a publish took: they have an entry to read, flagged or not.
    fn taken_in(&self, word: usize) -> u64 {
        let members = self.members.iter().skip(64 * word).take(64);
        members.enumerate().fold(0, |bits, (bit, member)| {
            bits | (u64::from(member.topic.was_taken(member.waiting)) << bit)
        })
    }

    /// The member `index` fell behind by `skipped` entries of its topic: applies the
    /// hub's [`LagPolicy`].
    fn lagged(&mut self, index: usize, skipped: u64) -> Lag {
        let policy = self.hub.config.lag_policy;
        let member = &mut self.members[index];
        let (head, newest, conflated) = {
            let state = member.topic.lock();
            let conflated = match policy {
                LagPolicy::Conflate => state.conflated_after(member.read),
                _ => None,
            };
            (state.head(), state.newest_id(), conflated)
        };
        let topic = member.topic.clone();
        topic.lagged.fetch_add(1, Ordering::Relaxed);
        self.hub.metrics.lagged(&topic.name, policy);
        let pending = member.catchup.len() as u64;
        match (policy, conflated) {
            (LagPolicy::Disconnect, _) => {
                topic.dropped.fetch_add(skipped, Ordering::Relaxed);
                tracing::debug!(topic = %topic.name, skipped, "hub subscriber lagged: its stream ends");
                self.ended = Some(SubscriptionError::Lagged {
                    skipped: skipped + pending,
                });
                Lag::Ended
            }
            (LagPolicy::Conflate, Some(items)) => {
                // What it still had to take in short stays, but for keys it missed a
                // newer event of.
                member.join_catchup(items);
                member.cursor = head;
                member.live_from = head;
                member.read = newest;
                let missed = skipped + pending;
                let kept = member.catchup.len() as u64;
                topic.conflated.fetch_add(1, Ordering::Relaxed);
                topic
                    .dropped
                    .fetch_add(missed.saturating_sub(kept), Ordering::Relaxed);
                tracing::debug!(topic = %topic.name, missed, kept, "hub subscriber lagged: it catches up in short");
                Lag::Conflated
            }
            (policy, _) => {
                if policy == LagPolicy::Conflate {
                    topic.conflate_fallbacks.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(topic = %topic.name, skipped, "hub subscriber lagged past what its topic's key index holds: it skips ahead");
                } else {
                    tracing::warn!(topic = %topic.name, skipped, "hub subscriber lagged: it skips ahead");
                }
                topic
                    .dropped
                    .fetch_add(skipped + pending, Ordering::Relaxed);
                skip_ahead(member, head, newest);
                // What this round took from other topics is read again.
                self.revisit.fill();
                self.ready
                    .push_back(self.hub.reset_event(GapReason::Lagged, None));
                Lag::Reset
            }
        }
    }
}

/// The member goes on from the newest entry of its topic, at `head`, whose id is
/// `newest`.
fn skip_ahead(member: &mut Member, head: u64, newest: u64) {
    member.catchup.clear();
    member.cursor = head;
    member.live_from = head;
    member.read = newest;
}
