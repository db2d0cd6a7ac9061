//! Fuzzing on stable, inside `cargo test`, for a bounded number of cases (proptest):
//!
//! - the encoder, driven by any sequence of builder calls (`tests/encoder.rs` checks
//!   single events field by field; this adds repeated fields, events without data, and
//!   the body of `SseLayer`, which coalesces the events of an `Sse` into frames),
//!   against an independent spec parser: every event is refused or reads back exactly;
//! - `Last-Event-ID` parsing from header bytes and query strings of any bytes: never a
//!   panic, and the result is absent or exactly the decoded UTF-8 value of at most 1 KiB;
//! - the hub's `subscribe_request` on any query string and any `Last-Event-ID`: never a
//!   panic, exactly the topics (or the error) a reference reading gives, the reset event
//!   exactly when the id calls for it, and nothing left behind once dropped.
//!
//! Failing cases proptest finds are kept in `tests/fuzz.proptest-regressions` and run
//! first on every later run. `PROPTEST_CASES=100000 cargo test --test fuzz` runs longer.

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource};
use futures_util::{FutureExt, StreamExt};
use http::{HeaderValue, Request, Uri};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_sse::hub::RequestError;
use tower_sse::{Event, EventBuilder, EventError, Hub, LastEventId, Sse, SseLayer};

/// Cases per property: `default`, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

// ---- The encoder and the body --------------------------------------------------------

/// One call on an [`EventBuilder`].
#[derive(Clone, Debug)]
enum Op {
    Event(String),
    Id(String),
    Data(String),
    Retry(u64),
    Comment(String),
}

/// Text made of what breaks encoders: every kind of line break, NUL, BOM, colons,
/// field names, non-ASCII, and any character at all.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{feff}".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("data:".to_owned()),
        Just("id: 1".to_owned()),
        Just("retry: 1".to_owned()),
        Just("event: x".to_owned()),
        "[a-z]{1,3}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => nasty().prop_map(Op::Event),
        1 => nasty().prop_map(Op::Id),
        3 => nasty().prop_map(Op::Data),
        1 => (0u64..10_000_000).prop_map(Op::Retry),
        1 => nasty().prop_map(Op::Comment),
    ]
}

/// The builder calls of one event, applied in order.
fn build(ops: &[Op]) -> Result<Event, EventError> {
    let mut builder = EventBuilder::new();
    for op in ops {
        builder = match op {
            Op::Event(t) => builder.event(t),
            Op::Id(id) => builder.id(id),
            Op::Data(d) => builder.data(d),
            Op::Retry(ms) => builder.retry(Duration::from_millis(*ms)),
            Op::Comment(c) => builder.comment(c),
        };
    }
    builder.build()
}

/// What the HTML standard makes of an event built with `ops`: refused (the first bad
/// field's error), or the event a browser dispatches (`None` when it has no data),
/// given the stream's last id so far, which it updates.
fn model(ops: &[Op], last_id: &mut String) -> Result<Option<Parsed>, &'static str> {
    for op in ops {
        match op {
            Op::Event(t) if t.contains(['\r', '\n']) => return Err("event"),
            Op::Id(id) if id.contains(['\r', '\n', '\0']) => return Err("id"),
            _ => {}
        }
    }
    let mut event_type = String::new();
    let mut data: Option<String> = None;
    let mut retry = None;
    for op in ops {
        match op {
            Op::Event(t) => event_type = t.clone(),
            Op::Id(id) => *last_id = id.clone(),
            Op::Data(d) => {
                let lines = d.replace("\r\n", "\n").replace('\r', "\n");
                data = Some(match data {
                    None => lines,
                    Some(before) => format!("{before}\n{lines}"),
                });
            }
            Op::Retry(ms) => retry = Some(Duration::from_millis(*ms)),
            Op::Comment(_) => {}
        }
    }
    Ok(data.map(|data| Parsed {
        event: if event_type.is_empty() {
            "message".to_owned()
        } else {
            event_type
        },
        data,
        id: last_id.clone(),
        retry,
    }))
}

fn parse(chunks: Vec<Bytes>) -> Vec<Parsed> {
    runtime().block_on(
        futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>))
            .eventsource()
            .map(|event| event.expect("parses"))
            .collect(),
    )
}

/// The data frames of an `Sse` response over `events` under `SseLayer`, with frames of
/// at most `max` bytes (one event larger than that goes alone).
fn body_frames(events: Vec<Event>, max: usize) -> Vec<Bytes> {
    let service = ServiceBuilder::new()
        .layer(SseLayer::new().no_heartbeat().max_frame_size(max))
        .service(service_fn(move |_request: Request<()>| {
            let events = futures_util::stream::iter(events.clone());
            async move { Ok::<_, std::convert::Infallible>(Sse::new(events).into_response()) }
        }));
    runtime().block_on(async move {
        let request = Request::get("/events").body(()).unwrap();
        let response = service.oneshot(request).await.unwrap();
        let mut body = response.into_body();
        let mut frames = Vec::new();
        let all = async {
            while let Some(frame) = body.frame().await {
                frames.push(frame.unwrap().into_data().unwrap());
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every frame of the body and its end within 10 s");
        frames
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn any_builder_calls_are_refused_or_read_back_exactly_through_the_body(
        events in prop::collection::vec(prop::collection::vec(op(), 0..6), 1..6),
        max in 1usize..256,
    ) {
        let mut last_id = String::new();
        let mut expected = Vec::new();
        let mut built = Vec::new();
        for ops in &events {
            match (build(ops), model(ops, &mut last_id)) {
                (Err(EventError::InvalidEventType), Err("event")) => {}
                (Err(EventError::InvalidId), Err("id")) => {}
                (Ok(event), Ok(dispatched)) => {
                    expected.extend(dispatched);
                    built.push(event);
                }
                (got, want) => prop_assert!(false, "{ops:?}: built {got:?}, expected {want:?}"),
            }
        }
        let wire: Vec<u8> = built.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
        let frames = body_frames(built.clone(), max);
        // The body writes exactly the events' bytes, in frames within the bound unless
        // one event alone is larger, and never splits an event.
        prop_assert_eq!(frames.concat(), wire);
        let mut sizes = built.iter().map(|e| e.as_bytes().len());
        for frame in &frames {
            let mut taken = 0;
            let mut count = 0;
            while taken < frame.len() {
                taken += sizes.next().expect("frames hold whole events");
                count += 1;
            }
            prop_assert_eq!(taken, frame.len(), "a frame ends at an event boundary");
            prop_assert!(frame.len() <= max || count == 1, "frame of {} > {max}", frame.len());
        }
        prop_assert_eq!(parse(frames), expected);
    }
}

// ---- Last-Event-ID -------------------------------------------------------------------

/// A reference percent-decoder, written from RFC 3986 and the form encoding: `+` is a
/// space, `%` and two hex digits a byte, any other `%` itself.
fn decode(component: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < component.len() {
        match component[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < component.len() => {
                match (hex(component[i + 1]), hex(component[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

/// What a valid id is: non-empty UTF-8 of at most 1 KiB.
fn as_id(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.len() > LastEventId::MAX_LEN {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

/// The id the query gives: the first `name` parameter's decoded value, if valid.
fn id_in_query(query: &str, name: &str) -> Option<String> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key.as_bytes()) == name.as_bytes() {
            return as_id(&decode(value.as_bytes()));
        }
    }
    None
}

/// The id a request to `uri`, without a `Last-Event-ID` header, gives from its
/// `lastEventId` query parameter.
fn from_query(uri: &Uri) -> Option<String> {
    let request = Request::get(uri.clone()).body(()).unwrap();
    LastEventId::from_request(&request, Some("lastEventId")).map(LastEventId::into_string)
}

/// Header values of any bytes, mostly of lengths around the 1 KiB bound.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(prop_oneof![Just(b'7'), any::<u8>()], 1000..1050),
        (1000usize..1050).prop_map(|n| "7".repeat(n).into_bytes()),
        (1000usize..1050).prop_map(|n| format!("é{}", "7".repeat(n)).into_bytes()),
    ]
}

/// Query strings built from the pieces that trip decoders, and any printable bytes.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("lastEventId".to_owned()),
        Just("last%45ventId".to_owned()),
        Just("topic".to_owned()),
        Just("=".to_owned()),
        Just("&".to_owned()),
        Just("+".to_owned()),
        Just("%".to_owned()),
        Just("%2".to_owned()),
        Just("%G0".to_owned()),
        Just("%FF".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("%E0%B8".to_owned()),
        Just("%00".to_owned()),
        Just("%0D%0A".to_owned()),
        Just("%2B".to_owned()),
        Just("%26".to_owned()),
        Just("%3D".to_owned()),
        "[0-9]{1,20}",
        "[a-zA-Z-._~]{1,4}",
        "[!$'()*,;:@/?]{1,2}",
        (1usize..1100).prop_map(|n| "%41".repeat(n)),
        (1020usize..1030).prop_map(|n| format!("lastEventId={}", "%41".repeat(n))),
        (1020usize..1030).prop_map(|n| format!("lastEventId=%C3%A9{}", "7".repeat(n))),
        (1usize..1100).prop_map(|n| "9".repeat(n)),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(4000)))]

    #[test]
    fn a_header_of_any_bytes_gives_its_utf8_value_of_at_most_1_kib_or_nothing(bytes in header_bytes()) {
        // Only bytes a header can carry reach the server (hyper refuses the others).
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        // From the header alone, and with the query parameter allowed (the URI has none).
        let request = Request::get("/e").header("last-event-id", value).body(()).unwrap();
        let got = LastEventId::from_request(&request, None).map(LastEventId::into_string);
        prop_assert_eq!(got, as_id(&bytes));
        let got = LastEventId::from_request(&request, Some("lastEventId")).map(LastEventId::into_string);
        prop_assert_eq!(got, as_id(&bytes));
    }

    #[test]
    fn a_query_gives_the_decoded_utf8_value_of_at_most_1_kib_or_nothing(query in query()) {
        let Ok(uri) = format!("/e?{query}").parse::<Uri>() else { return Ok(()) };
        let query = uri.query().unwrap_or("").to_owned();
        let got = from_query(&uri);
        let expected = id_in_query(&query, "lastEventId");
        if let Some(id) = &got {
            prop_assert!(id.len() <= LastEventId::MAX_LEN);
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn a_uri_of_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut target = b"/e?".to_vec();
        target.extend_from_slice(&bytes);
        let Ok(uri) = Uri::try_from(target) else { return Ok(()) };
        let got = from_query(&uri);
        prop_assert_eq!(got, id_in_query(uri.query().unwrap_or(""), "lastEventId"));
        let request = Request::get(uri).body(()).unwrap();
        let _ = Hub::new().subscribe_request(&request);
    }
}

// ---- The hub's subscribe_request -----------------------------------------------------

const MAX_TOPICS: usize = 4;

/// What `subscribe_request` must answer for `query`, read independently: the distinct
/// decoded values of the parameters whose decoded name is `topic`, in order, or the
/// first error met (an empty or non-UTF-8 value is one). Topics containing `deny`
/// are refused by the test's authorization hook, once all are read.
fn topics_in_query(query: &str) -> Result<Vec<String>, RequestError> {
    let mut names: Vec<String> = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key.as_bytes()) != b"topic" {
            continue;
        }
        let Ok(name) = String::from_utf8(decode(value.as_bytes())) else {
            return Err(RequestError::InvalidTopic);
        };
        // An empty name is not a topic (issue 19).
        if name.is_empty() {
            return Err(RequestError::InvalidTopic);
        }
        if !names.contains(&name) {
            if names.len() == MAX_TOPICS {
                return Err(RequestError::TooManyTopics { max: MAX_TOPICS });
            }
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(RequestError::NoTopic);
    }
    if let Some(denied) = names.iter().find(|n| n.contains("deny")) {
        return Err(RequestError::Forbidden {
            topic: denied.clone(),
        });
    }
    Ok(names)
}

fn topic_query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => Just("topic=".to_owned()),
        6 => "[a-g]".prop_map(|t| format!("topic={t}&")),
        1 => Just("Topic=".to_owned()),
        1 => Just("top%69c=".to_owned()),
        1 => Just("topic".to_owned()),
        1 => Just("&".to_owned()),
        1 => Just("=".to_owned()),
        1 => Just("+".to_owned()),
        1 => Just("%".to_owned()),
        1 => Just("%FF".to_owned()),
        1 => Just("%C3%A9".to_owned()),
        1 => Just("%00".to_owned()),
        1 => Just("deny".to_owned()),
        1 => Just("lastEventId=5".to_owned()),
        1 => "[a-d]{1,2}",
    ];
    prop::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

/// `Last-Event-ID` values around the hub's ids: in history, just outside it, far out,
/// and not numbers at all.
fn resume_id(first: u64, newest: u64) -> impl Strategy<Value = String> {
    prop_oneof![
        (first - 2..newest + 3).prop_map(|id| id.to_string()),
        (first..newest + 1).prop_map(|id| format!("+{id}")),
        any::<u64>().prop_map(|id| id.to_string()),
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        "[ -~]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    #[test]
    fn subscribe_request_answers_as_the_query_reads_and_leaves_nothing_behind(query in topic_query()) {
        let Ok(uri) = format!("/events?{query}").parse::<Uri>() else { return Ok(()) };
        let hub = Hub::builder()
            .max_topics(MAX_TOPICS)
            .authorize(|topic, _| !topic.contains("deny"))
            .build();
        let request = Request::get(uri.clone()).body(()).unwrap();
        let expected = topics_in_query(uri.query().unwrap_or(""));
        match hub.subscribe_request(&request) {
            Ok(subscription) => {
                let topics: Vec<String> = subscription.topics().map(str::to_owned).collect();
                prop_assert_eq!(Ok(topics), expected);
                prop_assert!(hub.all_stats().iter().all(|s| s.subscribers == 1));
            }
            Err(error) => prop_assert_eq!(Err(error), expected),
        }
        // Dropped: no subscriber and, with no history, no topic is left.
        prop_assert!(hub.all_stats().is_empty(), "{:?}", hub.all_stats());
    }
}

#[test]
fn any_last_event_id_resumes_replays_or_resets_as_its_value_calls_for() {
    let hub = Hub::builder().history_events(3).build();
    // Five events, of which history keeps the last three.
    let ids: Vec<u64> = (0..5)
        .map(|n| {
            hub.publish("t", Event::data(&n.to_string()))
                .unwrap()
                .id()
                .unwrap()
        })
        .collect();
    let (first, newest) = (ids[0] - 1, ids[4]);
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases(3000)));
    runner
        .run(&resume_id(first, newest), |id| {
            let request = Request::get("/events?topic=t")
                .header("last-event-id", &id)
                .body(())
                .unwrap();
            let mut subscription = hub.subscribe_request(&request).unwrap();
            let mut ready = Vec::new();
            while let Some(Some(Ok(event))) = subscription.next().now_or_never() {
                ready.push(String::from_utf8(event.as_bytes().to_vec()).unwrap());
            }
            // What the standard and the hub's docs call for.
            let expected: Vec<String> = match id.parse::<u64>() {
                _ if id.is_empty() => vec![],
                Err(_) => vec![format!(
                    "event: stream-reset\ndata: malformed\nid: {newest}\n\n"
                )],
                Ok(n) if n > newest || n < first => {
                    vec![format!(
                        "event: stream-reset\ndata: unknown\nid: {newest}\n\n"
                    )]
                }
                Ok(n) if n < ids[1] => {
                    vec![format!(
                        "event: stream-reset\ndata: evicted\nid: {newest}\n\n"
                    )]
                }
                Ok(n) => (2..5)
                    .filter(|&i| ids[i] > n)
                    .map(|i| format!("data: {i}\nid: {}\n\n", ids[i]))
                    .collect(),
            };
            prop_assert_eq!(ready, expected, "Last-Event-ID {:?}", id);
            drop(subscription);
            prop_assert_eq!(hub.stats("t").unwrap().subscribers, 0);
            Ok(())
        })
        .unwrap();
}
