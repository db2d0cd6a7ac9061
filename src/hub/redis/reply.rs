//! Redis's replies to the scripts and to `XREAD`, parsed. Both protocol versions are
//! read: RESP2 (arrays, bulk strings) and RESP3 (maps, simple strings, doubles).

use std::sync::Arc;

use ::redis::{ErrorKind, RedisError, Value};
use bytes::Bytes;

use crate::Event;
use crate::hub::MAX_KEY_LEN;
use crate::hub::log::{GapReason, Page};

/// What became of one event's write.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Stored under this id (now, or by an earlier attempt whose reply was lost).
    Stored(u64),
    /// Nothing written: the log's epoch is not the writer's, or the log went back.
    Epoch,
    /// Nothing written: Redis does not have the script (it restarted); load it again.
    NoScript,
    /// Nothing written: Redis cannot write now (loading, busy, read-only, down): retry.
    Retry(RedisError),
    /// Redis refused the event for good (a key of another type, no permission, out of
    /// memory, a script error), or answered what the script never returns.
    Rejected(RedisError),
}

/// Error codes of states that pass: the write is retried, and publishing fails fast
/// meanwhile. Every other error is the event's own.
const TRANSIENT: [&str; 6] = [
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "READONLY",
];

/// The outcome of one `PUBLISH` script call, from its reply.
pub(super) fn publish_outcome(reply: Value) -> Outcome {
    match reply {
        Value::ServerError(err) => {
            let err = RedisError::from(err);
            match err.code() {
                Some("NOSCRIPT") => Outcome::NoScript,
                Some(code) if TRANSIENT.contains(&code) => Outcome::Retry(err),
                _ => Outcome::Rejected(err),
            }
        }
        Value::Array(ref parts) | Value::Set(ref parts)
            if parts.len() == 1 && text(&parts[0]) == Some("epoch") =>
        {
            Outcome::Epoch
        }
        other => match integer(&other) {
            Some(id) if id > 0 => Outcome::Stored(id),
            _ => Outcome::Rejected(malformed("the publish script", &other)),
        },
    }
}

/// An error for a reply the scripts never give.
pub(super) fn malformed(what: &'static str, reply: &Value) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unexpected reply",
        format!("{what} answered {reply:?}"),
    ))
}

/// A log's epoch: `<name>:<start>`, and the counter's value when it began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Epoch {
    pub(super) name: Arc<str>,
    pub(super) start: u64,
}

impl Epoch {
    pub(super) fn parse(value: &Value) -> Option<Epoch> {
        let name = text(value)?;
        let start = name.rsplit_once(':')?.1.parse().ok()?;
        Some(Epoch {
            name: Arc::from(name),
            start,
        })
    }
}

/// The reply of the `EPOCH` script.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EpochReply {
    pub(super) epoch: Epoch,
    /// This call began the epoch.
    pub(super) began: bool,
    /// The counter before, and the epoch before (if there was one).
    pub(super) counter: u64,
    pub(super) previous: Option<Epoch>,
}

pub(super) fn parse_epoch(reply: &Value) -> Option<EpochReply> {
    let parts = array(reply)?;
    let [epoch, began, counter, previous] = parts else {
        return None;
    };
    Some(EpochReply {
        epoch: Epoch::parse(epoch)?,
        began: integer(began)? == 1,
        counter: integer(counter)?,
        previous: Epoch::parse(previous),
    })
}

/// The page of history the `HISTORY` script read: a gap, or the events.
pub(super) fn parse_history(reply: Value, after: u64, count: usize) -> Option<Page> {
    let [newest, floor, start, entries] = <[Value; 4]>::try_from(into_array(reply)?).ok()?;
    let (newest, floor, start) = (integer(&newest)?, integer(&floor)?, integer(&start)?);
    let entries = into_array(entries)?;
    if after > newest {
        return Some(Page::Gap(GapReason::Unknown));
    }
    if after < start {
        return Some(Page::Gap(GapReason::Lost { from: start }));
    }
    if floor > after {
        return Some(Page::Gap(GapReason::Evicted));
    }
    let full = entries.len() >= count;
    let mut events = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        let Some(entry) = parse_entry(entry) else {
            continue;
        };
        last = Some(entry.id);
        // A frame this crate did not write is skipped (and traced).
        events.extend(entry.event.map(|event| (entry.id, entry.key, event)));
    }
    Some(Page::Events {
        events,
        next: if full { last } else { None },
    })
}

/// A stream entry as this crate writes it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    /// The start of the epoch it was written in (0 if not recorded).
    pub(super) epoch: u64,
    /// Its conflation key (field `k`); `None` for a keyless event, and for an entry
    /// written before keys were stored.
    pub(super) key: Option<Arc<str>>,
    /// `None` if the entry holds no valid event frame.
    pub(super) event: Option<Event>,
}

/// `[id, [field, value, ...]]` (or the fields as a map) into the entry. `None` if even
/// the id cannot be read; an entry without a valid frame has no event, and is traced.
pub(super) fn parse_entry(entry: Value) -> Option<Entry> {
    let [id, fields] = <[Value; 2]>::try_from(into_array(entry)?).ok()?;
    let id = entry_id(&id)?;
    let mut entry = Entry {
        id,
        epoch: 0,
        key: None,
        event: None,
    };
    let mut field = |name: &Value, value: Value| match text(name) {
        Some("e") => {
            entry.event = match value {
                Value::BulkString(frame) => Event::from_stored_frame(Bytes::from(frame)),
                _ => None,
            }
        }
        Some("s") => entry.epoch = integer(&value).unwrap_or(0),
        // A key this crate did not write (empty, too long, not UTF-8): keyless.
        Some("k") => {
            entry.key = text(&value)
                .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LEN)
                .map(Arc::from)
        }
        _ => {}
    };
    match fields {
        Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| field(&k, v)),
        fields => {
            let mut fields = into_array(fields)?.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                field(&name, value);
            }
        }
    }
    if entry.event.is_none() {
        tracing::warn!(
            id,
            "skipping a stream entry that is not a valid event frame"
        );
    }
    Some(entry)
}

/// The streams of an `XREAD` reply, `[[key, entries], ...]` or a map: each stream's key
/// and entries. `None` for nothing read (nil) or a reply of another shape.
pub(super) fn xread_streams(reply: Value) -> Option<Vec<(String, Vec<Value>)>> {
    let pairs = match reply {
        Value::Map(pairs) => pairs,
        reply => into_array(reply)?
            .into_iter()
            .map(|stream| {
                <[Value; 2]>::try_from(into_array(stream)?)
                    .ok()
                    .map(|[k, e]| (k, e))
            })
            .collect::<Option<_>>()?,
    };
    pairs
        .into_iter()
        .map(|(key, entries)| Some((text(&key)?.to_owned(), into_array(entries)?)))
        .collect()
}

/// A number, however Redis sent it: an integer, a string of digits, or (RESP3) a
/// double that is a whole number.
pub(super) fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::Double(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 2f64.powi(53) => Some(*d as u64),
        _ => text(value)?.parse().ok(),
    }
}

/// The number before the dash of a stream entry id (`"42-0"` is 42).
pub(super) fn entry_id(value: &Value) -> Option<u64> {
    text(value)?.split('-').next()?.parse().ok()
}

/// A string reply, bulk or simple (or verbatim, in RESP3).
fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

fn array(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(values) | Value::Set(values) => Some(values),
        _ => None,
    }
}

fn into_array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(values) | Value::Set(values) => Some(values),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as Redis sends it on the wire.
    fn resp(bytes: &str) -> Value {
        ::redis::parse_redis_value(bytes.as_bytes()).expect("valid RESP")
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn frame(data: &str) -> String {
        format!("data: {data}\n\n")
    }

    /// `[id, [e, frame, p, .., s, ..]]` in RESP2.
    fn entry2(id: u64, data: &str, epoch: u64) -> String {
        let frame = frame(data);
        let epoch = epoch.to_string();
        let id = format!("{id}-0");
        format!(
            "*2\r\n${}\r\n{id}\r\n*6\r\n$1\r\ne\r\n${}\r\n{frame}\r\n$1\r\np\r\n$1\r\n0\r\n$1\r\ns\r\n${}\r\n{epoch}\r\n",
            id.len(),
            frame.len(),
            epoch.len()
        )
    }

    #[test]
    fn a_publish_reply_is_an_id_an_epoch_change_or_an_error_of_its_kind() {
        assert!(matches!(
            publish_outcome(resp(":42\r\n")),
            Outcome::Stored(42)
        ));
        // RESP3 may turn a whole number into a double; a script's string is read too.
        assert!(matches!(
            publish_outcome(resp(",42\r\n")),
            Outcome::Stored(42)
        ));
        assert!(matches!(publish_outcome(bulk("42")), Outcome::Stored(42)));
        assert!(matches!(
            publish_outcome(resp("*1\r\n$5\r\nepoch\r\n")),
            Outcome::Epoch
        ));
        assert!(matches!(
            publish_outcome(resp("*1\r\n+epoch\r\n")),
            Outcome::Epoch
        ));
        assert!(matches!(
            publish_outcome(resp("-NOSCRIPT No matching script.\r\n")),
            Outcome::NoScript
        ));
        for transient in [
            "-LOADING Redis is loading the dataset in memory\r\n",
            "-BUSY Redis is busy running a script.\r\n",
            "-READONLY You can't write against a read only replica.\r\n",
            "-MASTERDOWN Link with MASTER is down\r\n",
        ] {
            assert!(
                matches!(publish_outcome(resp(transient)), Outcome::Retry(_)),
                "{transient}"
            );
        }
        for permanent in [
            "-WRONGTYPE the key {p}:topic:t holds a string, not a stream\r\n",
            "-OOM command not allowed when used memory > 'maxmemory'. script: abc\r\n",
            "-ERR The user executing the script can't run this command or subcommand script: abc\r\n",
            "-NOPERM this user has no permissions to run the 'evalsha' command\r\n",
            "-ERR user_script:1: Script attempted to access nonexistent global variable\r\n",
        ] {
            match publish_outcome(resp(permanent)) {
                Outcome::Rejected(err) => {
                    let message = &permanent[1..permanent.len() - 2];
                    let code = message.split(' ').next().unwrap();
                    assert_eq!(err.code(), Some(code), "{permanent}");
                    assert!(
                        err.to_string().contains(&message[code.len() + 1..]),
                        "{err}"
                    );
                }
                other => panic!("{permanent}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_malformed_publish_reply_is_rejected_and_says_what_came() {
        for reply in [
            resp("$-1\r\n"),
            resp(":0\r\n"),
            resp(":-3\r\n"),
            resp("*0\r\n"),
            resp("*1\r\n$4\r\nnope\r\n"),
            resp(",4.5\r\n"),
            bulk("x"),
            resp("#t\r\n"),
        ] {
            match publish_outcome(reply.clone()) {
                Outcome::Rejected(err) => {
                    assert_eq!(err.kind(), ErrorKind::Parse, "{reply:?}");
                    assert!(err.to_string().contains("publish script"), "{err}");
                }
                other => panic!("{reply:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_epoch_reply_in_both_protocols() {
        let reply = resp("*4\r\n$9\r\nab:123456\r\n:1\r\n:77\r\n$4\r\nx:12\r\n");
        assert_eq!(
            parse_epoch(&reply),
            Some(EpochReply {
                epoch: Epoch {
                    name: Arc::from("ab:123456"),
                    start: 123456
                },
                began: true,
                counter: 77,
                previous: Some(Epoch {
                    name: Arc::from("x:12"),
                    start: 12
                }),
            })
        );
        // No epoch before; numbers as doubles and strings.
        let reply = resp("*4\r\n+ab:5\r\n,0\r\n$1\r\n9\r\n$0\r\n\r\n");
        let parsed = parse_epoch(&reply).unwrap();
        assert_eq!((parsed.epoch.start, parsed.began), (5, false));
        assert_eq!((parsed.counter, parsed.previous), (9, None));
        for bad in [
            "*3\r\n$4\r\nab:5\r\n:1\r\n:7\r\n",
            "*4\r\n$2\r\nab\r\n:1\r\n:7\r\n$0\r\n\r\n",
            "*4\r\n$4\r\nab:x\r\n:1\r\n:7\r\n$0\r\n\r\n",
            "*4\r\n$4\r\nab:5\r\n$1\r\nx\r\n:7\r\n$0\r\n\r\n",
            ":1\r\n",
            "$-1\r\n",
        ] {
            assert_eq!(parse_epoch(&resp(bad)), None, "{bad:?}");
        }
    }

    fn history(newest: u64, floor: u64, start: u64, entries: &[String]) -> Value {
        resp(&format!(
            "*4\r\n:{newest}\r\n${}\r\n{floor}\r\n${}\r\n{start}\r\n*{}\r\n{}",
            floor.to_string().len(),
            start.to_string().len(),
            entries.len(),
            entries.concat()
        ))
    }

    fn ids(page: Page) -> (Vec<u64>, Option<u64>) {
        match page {
            Page::Events { events, next } => (events.iter().map(|e| e.0).collect(), next),
            Page::Gap(reason) => panic!("a gap: {reason:?}"),
        }
    }

    #[test]
    fn a_history_page_in_order_with_where_to_go_on() {
        let entries = [entry2(11, "a", 1), entry2(12, "b", 1)];
        let reply = history(20, 3, 1, &entries);
        assert_eq!(
            ids(parse_history(reply.clone(), 10, 2).unwrap()),
            (vec![11, 12], Some(12))
        );
        assert_eq!(
            ids(parse_history(reply.clone(), 10, 5).unwrap()),
            (vec![11, 12], None)
        );
        assert_eq!(
            ids(parse_history(history(20, 0, 0, &[]), 10, 5).unwrap()),
            (vec![], None)
        );
    }

    #[test]
    fn a_history_page_tells_each_gap() {
        let reply = history(20, 5, 2, &[]);
        let gap = |after| match parse_history(reply.clone(), after, 10) {
            Some(Page::Gap(reason)) => Some(reason),
            _ => None,
        };
        assert_eq!(gap(21), Some(GapReason::Unknown));
        assert_eq!(gap(1), Some(GapReason::Lost { from: 2 }));
        assert_eq!(gap(4), Some(GapReason::Evicted));
        assert_eq!(gap(5), None);
        assert_eq!(gap(20), None);
    }

    #[test]
    fn a_malformed_history_reply_is_none_and_bad_entries_are_skipped() {
        for bad in [
            resp("*3\r\n:1\r\n:1\r\n*0\r\n"),
            resp("*4\r\n:1\r\n:1\r\n:1\r\n:1\r\n"),
            resp("*4\r\n$1\r\nx\r\n:1\r\n:1\r\n*0\r\n"),
            resp("*4\r\n:-1\r\n:1\r\n:1\r\n*0\r\n"),
            resp("$-1\r\n"),
            resp("-ERR boom\r\n"),
        ] {
            assert!(parse_history(bad.clone(), 0, 10).is_none(), "{bad:?}");
        }
        // An entry with no id is skipped; one that is not a frame is counted but not
        // given; a good one follows.
        let not_a_frame = "*2\r\n$4\r\n13-0\r\n*2\r\n$1\r\ne\r\n$3\r\nbad\r\n";
        let no_id = "*2\r\n$1\r\nx\r\n*0\r\n";
        let entries = [not_a_frame.to_owned(), no_id.to_owned(), entry2(14, "d", 0)];
        let reply = history(20, 0, 0, &entries);
        assert_eq!(
            ids(parse_history(reply.clone(), 12, 3).unwrap()),
            (vec![14], Some(14))
        );
    }

    #[test]
    fn an_entry_with_its_fields_as_an_array_or_a_map() {
        let entry = parse_entry(resp(&entry2(7, "x", 5))).unwrap();
        assert_eq!((entry.id, entry.epoch), (7, 5));
        assert_eq!(entry.event.unwrap().as_bytes().as_ref(), b"data: x\n\n");
        let map = Value::Array(vec![
            Value::SimpleString("8-0".into()),
            Value::Map(vec![
                (bulk("e"), bulk("data: y\n\n")),
                (bulk("s"), Value::Int(6)),
            ]),
        ]);
        let entry = parse_entry(map).unwrap();
        assert_eq!((entry.id, entry.epoch), (8, 6));
        assert!(entry.event.is_some());
        // Written before epochs were recorded: epoch 0.
        let old = resp("*2\r\n$3\r\n9-0\r\n*2\r\n$1\r\ne\r\n$9\r\ndata: z\n\n\r\n");
        assert_eq!(parse_entry(old).unwrap().epoch, 0);
        assert!(parse_entry(resp(":1\r\n")).is_none());
        assert!(parse_entry(resp("*1\r\n$3\r\n9-0\r\n")).is_none());
    }

    #[test]
    fn an_entry_carries_its_conflation_key_and_one_without_is_keyless() {
        let keyed = resp(
            "*2\r\n$3\r\n7-0\r\n*4\r\n$1\r\ne\r\n$9\r\ndata: x\n\n\r\n$1\r\nk\r\n$6\r\nTHA123\r\n",
        );
        assert_eq!(parse_entry(keyed).unwrap().key.as_deref(), Some("THA123"));
        // Written before keys were stored.
        assert_eq!(parse_entry(resp(&entry2(8, "y", 1))).unwrap().key, None);
        // As a map, and keys this crate never writes (empty, too long, not text).
        let with = |key: Value| {
            let entry = Value::Array(vec![
                bulk("9-0"),
                Value::Map(vec![(bulk("e"), bulk("data: z\n\n")), (bulk("k"), key)]),
            ]);
            parse_entry(entry).unwrap().key
        };
        assert_eq!(with(bulk("b")).as_deref(), Some("b"));
        assert_eq!(with(bulk("")), None);
        assert_eq!(with(bulk(&"k".repeat(MAX_KEY_LEN + 1))), None);
        assert_eq!(with(Value::BulkString(vec![0xff, 0xfe])), None);
        assert_eq!(with(Value::Int(3)), None);
        // A history page gives each event with its key.
        let key =
            "*2\r\n$4\r\n11-0\r\n*4\r\n$1\r\ne\r\n$9\r\ndata: a\n\n\r\n$1\r\nk\r\n$1\r\nq\r\n";
        let reply = history(20, 0, 0, &[key.to_owned(), entry2(12, "b", 0)]);
        match parse_history(reply, 10, 5).unwrap() {
            Page::Events { events, .. } => {
                let keys: Vec<_> = events.iter().map(|e| (e.0, e.1.as_deref())).collect();
                assert_eq!(keys, [(11, Some("q")), (12, None)]);
            }
            Page::Gap(reason) => panic!("a gap: {reason:?}"),
        }
    }

    #[test]
    fn xread_replies_in_both_protocols() {
        let entries = format!("*1\r\n{}", entry2(3, "a", 0));
        let resp2 = resp(&format!("*1\r\n*2\r\n$3\r\nk:t\r\n{entries}"));
        let resp3 = resp(&format!("%1\r\n$3\r\nk:t\r\n{entries}"));
        for reply in [resp2, resp3] {
            let mut streams = xread_streams(reply).unwrap();
            assert_eq!(streams.len(), 1);
            let (key, mut entries) = streams.pop().unwrap();
            assert_eq!(key, "k:t");
            assert_eq!(parse_entry(entries.pop().unwrap()).unwrap().id, 3);
        }
        assert!(xread_streams(resp("$-1\r\n")).is_none());
        assert!(xread_streams(resp("*1\r\n*1\r\n$3\r\nk:t\r\n")).is_none());
        assert!(xread_streams(resp("*1\r\n*2\r\n:1\r\n*0\r\n")).is_none());
    }

    #[test]
    fn numbers_and_entry_ids() {
        assert_eq!(integer(&Value::Int(-1)), None);
        assert_eq!(integer(&Value::Double(1e15)), Some(1_000_000_000_000_000));
        assert_eq!(integer(&Value::Double(f64::NAN)), None);
        assert_eq!(integer(&Value::Nil), None);
        assert_eq!(
            entry_id(&bulk("1700000000000001-0")),
            Some(1_700_000_000_000_001)
        );
        assert_eq!(entry_id(&bulk("x-0")), None);
        assert_eq!(entry_id(&Value::Int(3)), None);
    }
}
