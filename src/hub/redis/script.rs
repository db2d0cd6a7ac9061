//! The Lua scripts the storage runs. Their replies are parsed in `reply.rs`.
//!
//! The keys of one prefix `P` (the braces keep them in one Redis Cluster slot, as
//! scripts require):
//!
//! | key | what |
//! |---|---|
//! | `{P}:seq` | the shared counter: the newest id issued |
//! | `{P}:epoch` | `<name>:<start>`: the log's epoch, and the counter's value when it began |
//! | `{P}:marks` | a sorted set of the counter's value (member) over time (score, ms) |
//! | `{P}:topic:<topic>` | a topic's stream: entry `<id>-0` with fields `e` (the frame), `p` (an id its topic had no event after, other than those kept), `s` (the epoch's start), and `k` (its conflation key, if it has one) |
//! | `{P}:writer:<instance>` | one writer's recent writes: a list of `<event number>:<id>` |
//!
//! The counter and the epoch never expire; a topic's stream expires `ttl` after its last
//! publish, a writer's list a day after its last batch. Numbers go between Lua and Redis
//! as strings (`string.format('%d')`): Lua's own conversion writes `1e+15`.

/// Numbers an event with the shared counter and appends it to its topic's stream,
/// atomically, so that ids grow in the order events enter the log, across every topic
/// and every instance.
///
/// Idempotent: a writer numbers its events (`ARGV[4]`) and the script records
/// `<number>:<id>` in the writer's list. After an attempt whose replies were lost, the
/// writer reads the list (on the same connection, or after it closed: after every command
/// of the lost attempt ran) and acknowledges what was stored before it writes the rest
/// again. The first event of a new batch (`ARGV[5]` is 2) empties the list first: every
/// event before it has its outcome, so the list holds a batch or two.
///
/// Writes nothing if the epoch is not the writer's, or, at the start of a batch
/// (`ARGV[5]` is 1 or 2), if the counter is below an id the writer has seen (`ARGV[6]`):
/// the log went back, and the writer must establish the epoch again first (reply
/// `{'epoch'}`). Within one batch, on one connection, Redis cannot go back but by
/// losing everything (then the epoch is gone). A key of another type fails at
/// `XREVRANGE`, before anything is written, with Redis's `WRONGTYPE`; out of memory fails
/// at the first write, `INCR`, with Redis's `OOM`.
///
/// Each entry records (`p`) the id of its topic's previous entry, or, for a stream that
/// is new (or expired), the floor of `marks`: the counter's value at the first mark made
/// within the last `ttl`, above every id of a stream that expired since. Once `MAXLEN ~`
/// has trimmed the oldest entries, or the stream expired, that tells a resuming
/// subscriber whether it missed events. The start of a batch makes a mark if the last is
/// older than `ARGV[8]`.
///
/// Every event refreshes its stream's expiry, so a stream that is gone had its last
/// event at least `ttl` ago (by Redis's clock), before every mark made since.
///
/// An event with a conflation key (`ARGV[10]`, empty for none) stores it in field `k`;
/// readers take an entry without it (as written before keys were stored) as keyless.
///
/// KEYS: counter, epoch, stream, writer's list, marks. ARGV: frame, max length, epoch,
/// event number, start of a batch (0: no, 1: of a retry, 2: of a new batch), highest id
/// seen, ttl (ms), interval between marks (ms), epoch start, conflation key.
pub(super) const PUBLISH: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return {'epoch'} end
local batch = ARGV[5] ~= '0'
if batch and tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[6]) then
  return {'epoch'}
end
local previous = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[7])
local now
if batch or #previous == 0 then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
local p
if #previous > 0 then
  p = string.match(previous[1][1], '^(%d+)')
else
  local since = string.format('%d', now - ttl)
  local mark = redis.call('ZRANGEBYSCORE', KEYS[5], since, '+inf', 'LIMIT', 0, 1)
  if #mark > 0 then p = mark[1] else p = string.format('%d', id - 1) end
end
id = string.format('%d', id)
if ARGV[10] == '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], id .. '-0', 'e', ARGV[1], 'p', p, 's', ARGV[9])
else
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], id .. '-0', 'e', ARGV[1], 'p', p, 's', ARGV[9], 'k', ARGV[10])
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
if ARGV[5] == '2' then redis.call('DEL', KEYS[4]) end
redis.call('RPUSH', KEYS[4], ARGV[4] .. ':' .. id)
if batch then
  redis.call('PEXPIRE', KEYS[4], 86400000)
  local last = redis.call('ZREVRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if #last == 0 or now - tonumber(last[2]) >= tonumber(ARGV[8]) then
    redis.call('ZADD', KEYS[5], string.format('%d', now), id)
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. string.format('%d', now - 2 * ttl))
  end
end
return tonumber(id)
";

/// The newest id issued, the id below which the topic may have had events no longer
/// kept (the `p` of its stream's first entry, or the floor of the marks if the stream
/// is gone), the epoch's start, and at most `ARGV[3]` entries of the range asked for:
/// read together, so they agree.
///
/// Without an epoch (the log was emptied and not yet taken up again) the start is just
/// above the counter, so every id held before counts as lost.
///
/// KEYS: counter, stream, epoch, marks. ARGV: first entry id, last entry id, count,
/// ttl (ms).
pub(super) const HISTORY: &str = r"
local newest = redis.call('GET', KEYS[1]) or '0'
local epoch = redis.call('GET', KEYS[3])
local start = '0'
if epoch then
  start = string.match(epoch, ':(%d+)$') or '0'
elseif newest ~= '0' then
  start = string.format('%d', tonumber(newest) + 1)
end
local floor = '0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first > 0 then
  local fields = first[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then floor = fields[i + 1] end
  end
else
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local since = string.format('%d', now - tonumber(ARGV[4]))
  local mark = redis.call('ZRANGEBYSCORE', KEYS[4], since, '+inf', 'LIMIT', 0, 1)
  if #mark > 0 then floor = mark[1] else floor = newest end
end
return {newest, floor, start, redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2], 'COUNT', ARGV[3])}
";

/// Takes up the log's epoch, or begins a new one when there is none or the counter is
/// below an id this instance has seen (`ARGV[2]`): the log went back (Redis restarted
/// without persistence, was flushed, or failed over to a replica that lagged).
///
/// A new epoch's counter starts above every id issued before it: above the counter, a
/// margin (`ARGV[3]`) above the highest id this instance has seen, and at Redis's clock
/// in microseconds (ids grow far slower than one per microsecond, so an epoch begun
/// later starts above every id of an earlier one, whichever instance saw what).
///
/// A new epoch also marks its start in `marks`: no stream of this epoch expired before
/// it, so a stream new in a young epoch needs no floor above the start.
///
/// Replies `{epoch, began (0 or 1), counter found, epoch found or ''}`.
///
/// KEYS: counter, epoch, marks. ARGV: a name for a new epoch, highest id seen, margin.
pub(super) const EPOCH: &str = r"
local epoch = redis.call('GET', KEYS[2])
local counter = tonumber(redis.call('GET', KEYS[1]) or '0')
local found = string.format('%d', counter)
if epoch and counter >= tonumber(ARGV[2]) then
  return {epoch, 0, found, epoch}
end
local clock = redis.call('TIME')
local start = math.max(counter, tonumber(ARGV[2]) + tonumber(ARGV[3]),
  tonumber(clock[1]) * 1000000 + tonumber(clock[2]))
start = string.format('%d', start)
redis.call('SET', KEYS[1], start)
local began = ARGV[1] .. ':' .. start
redis.call('SET', KEYS[2], began)
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[3], string.format('%d', now), start)
return {began, 1, found, epoch or ''}
";
