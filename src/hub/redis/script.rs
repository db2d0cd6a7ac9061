//! The Lua scripts the storage runs, and the parsing of Redis's replies.

use ::redis::Value;
use bytes::Bytes;

use crate::hub::log::{GapReason, Page};

use crate::Event;

/// Numbers an event with the shared counter and appends it to its topic's stream,
/// atomically, so that ids grow in the order events enter the log, across every topic
/// and every instance. Each entry also records the id of the topic's previous entry
/// (`p`): once `MAXLEN ~` has trimmed the oldest entries, the first one left tells the
/// id of the last one trimmed.
pub(super) const PUBLISH: &str = r"
local id = redis.call('INCR', KEYS[1])
local previous = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local p = '0'
if #previous > 0 then p = string.match(previous[1][1], '^(%d+)') end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'e', ARGV[1], 'p', p)
return id
";

/// The newest id issued, the id of the last entry trimmed from the topic's stream (the
/// `p` of its first entry), and at most `ARGV[3]` entries of the range asked for: read
/// together, so they agree.
pub(super) const HISTORY: &str = r"
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
local trimmed = '0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  local fields = first[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then trimmed = fields[i + 1] end
  end
end
return {newest, trimmed, redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}
";

pub(super) fn parse_history(reply: Value, after: u64, count: usize) -> Option<Page> {
    let Value::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 3 {
        return None;
    }
    let entries = parts.pop()?;
    let trimmed = integer(&parts.pop()?)?;
    let newest = integer(&parts.pop()?)?;
    if after > newest {
        return Some(Page::Gap(GapReason::Unknown));
    }
    if trimmed > after {
        return Some(Page::Gap(GapReason::Evicted));
    }
    let Value::Array(entries) = entries else {
        return None;
    };
    let full = entries.len() >= count;
    let mut events = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        last = match &entry {
            Value::Array(parts) => parts.first().and_then(entry_id),
            _ => None,
        }
        .or(last);
        // A frame this crate did not write is skipped (and traced).
        events.extend(parse_entry(entry));
    }
    Some(Page::Events {
        events,
        next: if full { last } else { None },
    })
}

pub(super) fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    }
}

/// The number before the dash of a stream entry id (`"42-0"` is 42).
pub(super) fn entry_id(value: &Value) -> Option<u64> {
    let text = match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
        Value::SimpleString(text) => text.as_str(),
        _ => return None,
    };
    text.split('-').next()?.parse().ok()
}

/// `[id, [field, value, ...]]` into the id and the stored event. An entry that is not
/// a frame this crate wrote is skipped and traced.
pub(super) fn parse_entry(entry: Value) -> Option<(u64, Event)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = entry_id(&parts.pop()?)?;
    let fields = match fields {
        Value::Array(fields) => fields,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, Value::BulkString(n) if n == b"e")
            && let Value::BulkString(frame) = value
        {
            let event = Event::from_stored_frame(Bytes::from(frame));
            if event.is_none() {
                tracing::warn!(
                    id,
                    "skipping a stream entry that is not a valid event frame"
                );
            }
            return event.map(|event| (id, event));
        }
    }
    None
}
