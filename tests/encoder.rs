//! The encoder against an independent spec parser: every frame either is refused or
//! reads back as exactly the event that was built, with no extra field and no extra event.

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event as Parsed, Eventsource};
use futures_util::StreamExt;
use proptest::prelude::*;
use tower_sse::{Event, EventError};

/// Parses `chunks` (the concatenated frames, split anywhere) with `eventsource-stream`.
fn parse(chunks: Vec<Bytes>) -> Vec<Parsed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>))
            .eventsource()
            .map(|event| event.expect("parses"))
            .collect()
            .await
    })
}

/// What a browser's data buffer holds for `data`: every CRLF, CR or LF becomes LF.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The lines of one frame, as a spec parser splits them.
fn lines(frame: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(frame).expect("frames are UTF-8");
    normalized(text).split('\n').map(str::to_owned).collect()
}

#[derive(Clone, Debug)]
struct Spec {
    event: Option<String>,
    id: Option<String>,
    data: String,
    comment: Option<String>,
    retry: Option<u64>,
}

impl Spec {
    fn build(&self) -> Result<Event, EventError> {
        let mut builder = Event::builder();
        if let Some(comment) = &self.comment {
            builder = builder.comment(comment);
        }
        if let Some(event) = &self.event {
            builder = builder.event(event);
        }
        if let Some(id) = &self.id {
            builder = builder.id(id);
        }
        if let Some(retry) = self.retry {
            builder = builder.retry(Duration::from_millis(retry));
        }
        builder.data(&self.data).build()
    }

    fn must_refuse(&self) -> bool {
        self.event
            .as_deref()
            .is_some_and(|t| t.contains(['\r', '\n']))
            || self
                .id
                .as_deref()
                .is_some_and(|id| id.contains(['\r', '\n', '\0']))
    }
}

/// Text made of the pieces that break encoders: line breaks of every kind, NUL, BOM,
/// colons and spaces, field names, emoji and other scripts.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("\n".to_owned()),
        Just("\0".to_owned()),
        Just("\u{feff}".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("data: x".to_owned()),
        Just("id: 1".to_owned()),
        Just("event: forged".to_owned()),
        Just("✈️".to_owned()),
        Just("สวัสดี".to_owned()),
        "[a-z]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(nasty()),
        prop::option::of(nasty()),
        nasty(),
        prop::option::of(nasty()),
        prop::option::of(0u64..100_000),
    )
        .prop_map(|(event, id, data, comment, retry)| Spec {
            event,
            id,
            data,
            comment,
            retry,
        })
}

/// Checks the frame line by line: only the fields that were set, once each, as many
/// `data:` and comment lines as the values have lines, one blank line at the end.
fn check_lines(spec: &Spec, frame: &[u8]) {
    let lines = lines(frame);
    let (body, tail) = lines.split_at(lines.len() - 2);
    assert_eq!(tail, ["", ""], "frame ends with one blank line");
    let count = |name: &str| {
        body.iter()
            .filter(|line| line.split_once(':').map_or(line.as_str(), |(n, _)| n) == name)
            .count()
    };
    let comments = body.iter().filter(|line| line.starts_with(':')).count();
    assert_eq!(count("event"), spec.event.is_some() as usize);
    assert_eq!(count("id"), spec.id.is_some() as usize);
    assert_eq!(count("retry"), spec.retry.is_some() as usize);
    assert_eq!(count("data"), normalized(&spec.data).split('\n').count());
    let comment_lines = spec
        .comment
        .as_deref()
        .map_or(0, |c| normalized(c).split('\n').count());
    assert_eq!(comments, comment_lines);
    assert_eq!(
        body.len(),
        count("event") + count("id") + count("retry") + count("data") + comments,
        "no other line: {body:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn refused_or_read_back_exactly(specs in prop::collection::vec(spec(), 1..5), split in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();
        for spec in &specs {
            match spec.build() {
                Err(EventError::InvalidEventType) => {
                    prop_assert!(spec.event.as_deref().is_some_and(|t| t.contains(['\r', '\n'])));
                }
                Err(EventError::InvalidId) => {
                    prop_assert!(spec.id.as_deref().is_some_and(|id| id.contains(['\r', '\n', '\0'])));
                    prop_assert!(!spec.event.as_deref().is_some_and(|t| t.contains(['\r', '\n'])));
                }
                Err(other) => panic!("unexpected error {other}"),
                Ok(event) => {
                    prop_assert!(!spec.must_refuse(), "{spec:?} should have been refused");
                    check_lines(spec, event.as_bytes());
                    if let Some(id) = &spec.id {
                        last_id = id.clone();
                    }
                    let event_type = spec.event.clone().filter(|t| !t.is_empty());
                    expected.push(Parsed {
                        event: event_type.unwrap_or_else(|| "message".to_owned()),
                        data: normalized(&spec.data),
                        id: last_id.clone(),
                        retry: spec.retry.map(Duration::from_millis),
                    });
                    wire.extend_from_slice(event.as_bytes());
                }
            }
        }
        // Deliver the frames in two chunks split at an arbitrary byte.
        let at = split.index(wire.len() + 1);
        let wire = Bytes::from(wire);
        let parsed = parse(vec![wire.slice(..at), wire.slice(at..)]);
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn comments_never_become_fields(text in nasty()) {
        let event = Event::builder().comment(&text).data("payload").build().unwrap();
        let parsed = parse(vec![event.as_bytes().clone()]);
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(&parsed[0].data, "payload");
        prop_assert_eq!(&parsed[0].event, "message");
        prop_assert_eq!(&parsed[0].id, "");
        prop_assert_eq!(parsed[0].retry, None);
        // A heartbeat with text, as `SseLayer::heartbeat_event` writes it: a comment only.
        let heartbeat = Event::comment(&text);
        prop_assert!(parse(vec![heartbeat.into_bytes()]).is_empty());
    }
}

#[test]
fn byte_exact_frames() {
    let cases: Vec<(Event, &[u8])> = vec![
        (Event::data("a\r\nb"), b"data: a\ndata: b\n\n"),
        (Event::data("a\rb"), b"data: a\ndata: b\n\n"),
        (Event::data("a\nb\n"), b"data: a\ndata: b\ndata:\n\n"),
        (Event::data(""), b"data:\n\n"),
        (Event::comment(""), b":\n\n"),
        (Event::comment("a\nb"), b": a\n: b\n\n"),
        (
            Event::builder()
                .event("position")
                .id("✈️-1")
                .retry(Duration::from_secs(1))
                .data("{}")
                .build()
                .unwrap(),
            "event: position\nid: ✈️-1\nretry: 1000\ndata: {}\n\n".as_bytes(),
        ),
    ];
    for (event, bytes) in cases {
        assert_eq!(event.as_bytes().as_ref(), bytes, "{event:?}");
    }
}

#[test]
fn crlf_gives_one_line_break_not_two() {
    let parsed = parse(vec![Event::data("a\r\nb").into_bytes()]);
    assert_eq!(parsed[0].data, "a\nb");
}

#[test]
fn empty_data_fires_an_event() {
    let parsed = parse(vec![Event::data("").into_bytes()]);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].data, "");
}

#[test]
fn injection_attempts_are_refused_not_written() {
    let attempts = [
        Event::builder()
            .event("x\n\ndata: forged")
            .data("d")
            .build(),
        Event::builder().event("x\rid: 9").data("d").build(),
        Event::builder().id("1\n\ndata: forged").data("d").build(),
        Event::builder().id("1\0").data("d").build(),
    ];
    for attempt in attempts {
        assert!(attempt.is_err());
    }
    // Data and comments cannot be refused: they are split so nothing escapes its field.
    let event = Event::builder()
        .comment("c\n\ndata: forged")
        .data("x\n\nevent: forged\r\rid: 9")
        .build()
        .unwrap();
    let parsed = parse(vec![event.into_bytes()]);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].data, "x\n\nevent: forged\n\nid: 9");
    assert_eq!(parsed[0].event, "message");
    assert_eq!(parsed[0].id, "");
}
