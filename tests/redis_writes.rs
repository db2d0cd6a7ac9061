//! Issue 19: every event's write to Redis has its own outcome, against a real
//! `redis-server` on a free loopback port. An error Redis gives one event (a key of
//! another type, out of memory, no permission) fails that event's `acknowledged()` with
//! `PublishError::Rejected`, carrying Redis's message, and holds nothing else back;
//! a connection cut in the middle of a batch is retried without storing anything twice.

#![cfg(feature = "redis")]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::redis::RedisServer;
use tokio::time::timeout;
use tower_sse::hub::{PublishError, Published, RedisStorage};
use tower_sse::{Event, Hub};

/// Hang guard of every wait; never a time the test asserts.
const GUARD: Duration = Duration::from_secs(30);

fn redis_hub(url: &str, prefix: &str) -> Hub {
    let storage = RedisStorage::new(url)
        .unwrap()
        .prefix(prefix)
        .max_len(100_000)
        .queue(100_000);
    Hub::builder().redis(storage).build()
}

async fn outcome(published: Published) -> Result<u64, PublishError> {
    timeout(GUARD, published.acknowledged())
        .await
        .expect("hang guard: every event gets its outcome")
}

fn frame(n: usize) -> String {
    format!("data: {n}\n\n")
}

fn stream_key(prefix: &str, topic: &str) -> String {
    format!("{{{prefix}}}:topic:{topic}")
}

/// A publish Redis refused: typed, with Redis's message and error as the source.
fn assert_rejected(err: &PublishError, message: &str) {
    assert!(matches!(err, PublishError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains(message), "{err}");
    let source = std::error::Error::source(err).expect("Redis's error as the source");
    assert!(source.to_string().contains(message), "{source}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_key_of_another_type_fails_its_own_events_and_no_other() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let bad = stream_key("wrongtype", "bad");
    let () = redis::cmd("SET")
        .arg(&bad)
        .arg("a string")
        .query(&mut conn)
        .unwrap();
    let hub = redis_hub(&redis.url(), "wrongtype");

    // Published at once, so that the writer's batches mix the three topics.
    let mut published = Vec::new();
    for n in 0..900 {
        let topic = ["a", "bad", "b"][n % 3];
        let taken = hub
            .publish(topic, Event::data(&n.to_string()))
            .unwrap_or_else(|err| panic!("event {n} on {topic} is taken while Redis is up: {err}"));
        published.push((topic, n, taken));
    }
    let mut acked: HashMap<&str, Vec<(u64, String)>> = HashMap::new();
    let (mut refused, mut last) = (0, 0);
    for (topic, n, taken) in published {
        match (topic, outcome(taken).await) {
            ("bad", Err(err)) => {
                assert_rejected(&err, "WRONGTYPE");
                refused += 1;
            }
            ("bad", Ok(id)) => panic!("event {n} on the bad topic stored as {id}"),
            (_, Ok(id)) => {
                assert!(id > last, "ids follow the order of publishing");
                last = id;
                acked.entry(topic).or_default().push((id, frame(n)));
            }
            (_, Err(err)) => panic!("event {n} on {topic} failed: {err}"),
        }
    }
    assert_eq!(refused, 300);
    for topic in ["a", "b"] {
        assert_eq!(
            redis.stored(&stream_key("wrongtype", topic)),
            acked[topic],
            "{topic}: every event stored once, in order, under the id acknowledged"
        );
    }
    let value: String = redis::cmd("GET").arg(&bad).query(&mut conn).unwrap();
    assert_eq!(value, "a string", "the key of another type is left alone");
    let id = outcome(hub.publish("a", Event::data("after")).unwrap()).await;
    assert!(id.unwrap() > last, "publishing goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_fails_each_event_then_writes_resume_with_nothing_stored_twice() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let hub = redis_hub(&redis.url(), "oom");
    let mut acked = Vec::new();
    for n in 0..50 {
        let taken = hub.publish("t", Event::data(&n.to_string())).unwrap();
        acked.push((outcome(taken).await.unwrap(), frame(n)));
    }

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let during: Vec<Published> = (50..250)
        .map(|n| {
            hub.publish("t", Event::data(&n.to_string()))
                .unwrap_or_else(|err| panic!("event {n} is taken: Redis is up ({err})"))
        })
        .collect();
    for taken in during {
        assert_rejected(&outcome(taken).await.unwrap_err(), "OOM");
    }

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut conn)
        .unwrap();
    let after: Vec<(Published, usize)> = (250..350)
        .map(|n| (hub.publish("t", Event::data(&n.to_string())).unwrap(), n))
        .collect();
    for (taken, n) in after {
        acked.push((outcome(taken).await.unwrap(), frame(n)));
    }
    assert_eq!(
        redis.stored(&stream_key("oom", "t")),
        acked,
        "every acknowledged event stored once, in order; none of the refused ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_permission_to_xadd_gets_a_typed_error_per_event() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "publisher",
                "on",
                ">secret",
                "~*",
                "&*",
                "+@all",
                "-xadd",
            ][..],
        )
        .query(&mut conn)
        .unwrap();
    let url = format!("redis://publisher:secret@127.0.0.1:{}/", redis.port);
    let hub = redis_hub(&url, "acl");
    for n in 0..20 {
        let taken = hub
            .publish("t", Event::data(&n.to_string()))
            .unwrap_or_else(|err| panic!("event {n} is taken: Redis is up ({err})"));
        assert_rejected(&outcome(taken).await.unwrap_err(), "can't run this command");
    }
    assert!(redis.stored(&stream_key("acl", "t")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_in_the_middle_of_batches_store_every_event_once() {
    const EVENTS: usize = 20_000;
    const CUTS: usize = 10;
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let hub = redis_hub(&redis.url(), "cut");
    let topics = ["a", "b", "c", "d"];
    // Taken at once, while Redis is up: the writer writes them in full batches.
    let published: Vec<(&str, usize, Published)> = (0..EVENTS)
        .map(|n| {
            let topic = topics[n % topics.len()];
            (
                topic,
                n,
                hub.publish(topic, Event::data(&n.to_string())).unwrap(),
            )
        })
        .collect();

    // Meanwhile, another client cuts every connection of the hub (`CLIENT KILL TYPE
    // normal` spares its own) each time the counter moved on by a thousand.
    let done = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, cut, mut conn) = (done.clone(), cut.clone(), redis.connection());
        std::thread::spawn(move || {
            let mut last: Option<u64> = None;
            while !done.load(Ordering::SeqCst) && cut.load(Ordering::SeqCst) < CUTS {
                let counter: Option<u64> =
                    redis::cmd("GET").arg("{cut}:seq").query(&mut conn).unwrap();
                match (counter, last) {
                    (Some(counter), Some(before)) if counter >= before + 1000 => {
                        let killed: usize = redis::cmd("CLIENT")
                            .arg(&["KILL", "TYPE", "normal"][..])
                            .query(&mut conn)
                            .unwrap();
                        cut.fetch_add(usize::from(killed > 0), Ordering::SeqCst);
                        last = Some(counter);
                    }
                    (Some(counter), None) => last = Some(counter),
                    _ => std::thread::yield_now(),
                }
            }
        })
    };

    let mut acked: HashMap<&str, Vec<(u64, String)>> = HashMap::new();
    for (topic, n, taken) in published {
        let id = outcome(taken)
            .await
            .unwrap_or_else(|err| panic!("event {n} on {topic}: {err}"));
        acked.entry(topic).or_default().push((id, frame(n)));
    }
    done.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    assert!(cut.load(Ordering::SeqCst) > 0, "connections were cut");
    for topic in topics {
        let stored = redis.stored(&stream_key("cut", topic));
        let twice = stored.len() - stored.iter().map(|e| &e.1).collect::<HashSet<_>>().len();
        assert_eq!(twice, 0, "{topic}: events stored twice");
        assert_eq!(
            stored, acked[topic],
            "{topic}: every event stored once, in order, under the id acknowledged"
        );
    }
    println!(
        "{EVENTS} events written while the writer's connection was cut {} times: each stored once",
        cut.load(Ordering::SeqCst)
    );
}

/// Not a test: what writing costs. 200,000 small events on 64 topics, published 10,000
/// at a time; prints the time and Redis's own time per script call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --all-features --test redis_writes -- --ignored --nocapture"]
async fn write_throughput() {
    let redis = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let hub = redis_hub(&redis.url(), "throughput");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let published: Vec<Published> = (0..10_000)
            .map(|n| {
                hub.publish(&format!("topic-{}", n % 64), Event::data("{\"n\":1}"))
                    .unwrap()
            })
            .collect();
        for taken in published {
            outcome(taken).await.unwrap();
        }
    }
    let elapsed = started.elapsed();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    let script = info
        .lines()
        .find(|line| line.starts_with("cmdstat_evalsha:"))
        .unwrap_or("no script calls");
    println!("200000 events written in {elapsed:.2?}; {script}");
}
