//! Model checks of the hub's park / wake / watermark protocol, with loom: the real
//! `publish`, `subscribe` and subscription stream, on loom's locks and atomics
//! (`crate::sync`), every interleaving up to the preemption bound explored.
//!
//! A subscriber that waits polls by hand and parks its model thread until its waker is
//! woken ([`Task`]): a lost wake-up leaves it parked for ever, which loom reports as a
//! deadlock. Not covered here: a shared log (Redis), lag policies, replay, the budget's
//! clock (every model creates its topics before its threads start, so no publish moves
//! the hand).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use loom::thread;

use crate::sync::check::{Task, model};
use crate::{Event, Hub, Subscription};

/// The id an event was published with.
fn id(event: &Event) -> u64 {
    let text = std::str::from_utf8(event.as_bytes()).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
    line.parse().unwrap()
}

/// Polls `subscription` once with `task`'s waker.
fn poll(subscription: &mut Subscription, task: &Arc<Task>) -> Poll<Event> {
    let waker = task.waker();
    let mut cx = Context::from_waker(&waker);
    match Pin::new(subscription).poll_next(&mut cx) {
        Poll::Ready(Some(Ok(event))) => Poll::Ready(event),
        Poll::Ready(other) => panic!("the subscription ended: {other:?}"),
        Poll::Pending => Poll::Pending,
    }
}

/// The next event of `subscription`, its thread parked while it waits.
fn next(subscription: &mut Subscription) -> Event {
    let task = Task::new();
    loop {
        match poll(subscription, &task) {
            Poll::Ready(event) => return event,
            Poll::Pending => task.wait(),
        }
    }
}

/// Publishes one event on `topic` from a thread of its own; the thread gives its id.
fn publisher(hub: &Hub, topic: &'static str) -> thread::JoinHandle<u64> {
    let hub = hub.clone();
    thread::spawn(move || {
        let published = hub.publish(topic, Event::data(topic)).unwrap();
        published.id().unwrap()
    })
}

/// A subscriber that parks on its topic while a publisher appends is woken, or finds
/// the entry as it reads: one topic, read without the watermark.
#[test]
fn parked_subscriber_is_woken_or_sees_the_entry() {
    model(|| {
        let hub = Hub::new();
        let mut subscription = hub.subscribe(["t"], None);
        let publisher = publisher(&hub, "t");
        let event = next(&mut subscription);
        assert_eq!(id(&event), publisher.join().unwrap());
    });
}

/// The same over two topics, where the subscriber reads up to the watermark and a
/// registration the publish took counts before its flag is set.
#[test]
fn parked_merging_subscriber_is_woken_or_sees_the_entry() {
    model(|| {
        let hub = Hub::new();
        let mut subscription = hub.subscribe(["t", "u"], None);
        let publisher = publisher(&hub, "u");
        let event = next(&mut subscription);
        assert_eq!(id(&event), publisher.join().unwrap());
    });
}

/// Two publishers on two topics: a subscription on both yields both events, the
/// smaller id first, whatever the order their appends and watermark moves interleave.
#[test]
fn merge_never_yields_a_larger_id_first() {
    model(|| {
        let hub = Hub::new();
        let mut subscription = hub.subscribe(["a", "b"], None);
        let a = publisher(&hub, "a");
        let b = publisher(&hub, "b");
        let first = id(&next(&mut subscription));
        let second = id(&next(&mut subscription));
        let mut published = [a.join().unwrap(), b.join().unwrap()];
        published.sort_unstable();
        assert_eq!([first, second], published);
    });
}

/// A subscription that leaves (its registration removed) while a publish takes the
/// waiters: the removal never takes another subscriber's newer registration, which
/// may have the same slot in the next round, so that subscriber is still woken by the
/// next publish; and nothing stays parked once both are gone.
#[test]
fn unpark_racing_take_waiters_removes_only_its_own() {
    model(|| {
        let hub = Hub::new();
        let mut leaving = hub.subscribe(["t"], None);
        let mut staying = hub.subscribe(["t"], None);
        // Parked in the first round, in the first slot.
        assert!(poll(&mut leaving, &Task::new()).is_pending());
        let leaver = thread::spawn(move || drop(leaving));
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || {
                let first = hub.publish("t", Event::data("1")).unwrap();
                let second = hub.publish("t", Event::data("2")).unwrap();
                [first.id().unwrap(), second.id().unwrap()]
            })
        };
        let read = [id(&next(&mut staying)), id(&next(&mut staying))];
        leaver.join().unwrap();
        assert_eq!(read, publisher.join().unwrap());
        drop(staying);
        let topic = hub.inner.find("t").unwrap();
        let state = topic.lock();
        assert_eq!((state.parked(), state.subscribers), (0, 0));
    });
}
