//! The pool's Lua scripts: every state change of a task is one of these, so
//! each is atomic on the server.
//!
//! Keys are derived from the namespace inside the scripts (`NS:results`,
//! `NS:d:ID`...): the pool runs on one server, not on a cluster. Scripts
//! that read the server's clock call `redis.replicate_commands()` first, as
//! Redis 6.2 requires before writes that follow `TIME`.

use std::sync::OnceLock;

use redis::Script;

/// Submits tasks whose ids were not submitted before (idempotent).
///
/// One `HMGET` finds the ids known already and one `HSET` records the new
/// ones, for the whole batch (a command per task costs the server more
/// than the task's `XADD`); a single task's id is claimed by one `HSETNX`.
///
/// ARGV: ns, then per task: stream, id, f, a, m, r, t, b, delay_ms.
/// Returns a code per task: 1 (queued), 2 (delayed) or 0 (a duplicate id:
/// nothing done).
const SUBMIT: &str = r"
redis.replicate_commands()
local ns = ARGV[1]
local out = {}
local now = nil
local known = {}
local ids = {}
for i = 2, #ARGV, 9 do ids[#ids + 1] = ARGV[i + 1] end
-- One task (apply_async): HSETNX claims its id in one call.
local single = #ids == 1
local have
if single then
  have = { redis.call('HSETNX', ns .. ':ids', ids[1], ARGV[2]) == 0 }
else
  have = redis.call('HMGET', ns .. ':ids', unpack(ids))
end
local seen, fresh = {}, {}
for j, id in ipairs(ids) do
  local i = 2 + (j - 1) * 9
  local s = ARGV[i]
  if have[j] or seen[id] then
    out[j] = 0
  else
    seen[id] = true
    fresh[#fresh + 1] = id
    fresh[#fresh + 1] = s
    if not known[s] then
      redis.call('SADD', ns .. ':streams', s)
      known[s] = true
    end
    local delay = tonumber(ARGV[i + 8])
    if delay > 0 then
      if not now then
        local t = redis.call('TIME')
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      redis.call('HSET', ns .. ':d:' .. id, 's', s, 'id', id, 'f', ARGV[i + 2],
        'a', ARGV[i + 3], 'n', '1', 'm', ARGV[i + 4], 'r', ARGV[i + 5], 't', ARGV[i + 6],
        'b', ARGV[i + 7])
      redis.call('ZADD', ns .. ':delayed', now + delay, id)
      out[j] = 2
    else
      redis.call('XADD', s, '*', 'id', id, 'f', ARGV[i + 2], 'a', ARGV[i + 3], 'n', '1',
        'm', ARGV[i + 4], 'r', ARGV[i + 5], 't', ARGV[i + 6], 'b', ARGV[i + 7])
      out[j] = 1
    end
  end
end
if #fresh > 0 and not single then redis.call('HSET', ns .. ':ids', unpack(fresh)) end
return out
";

/// Commits tasks' outcomes, each fenced: only if `consumer` still owns the
/// entry. For each: acknowledges the entry, stores the outcome unless one
/// is stored already, notifies the submitter, and for a final failure adds
/// a dead letter. Per stream, one `XPENDING` over the batch's range finds
/// the entries this consumer still owns, one `XACK` acknowledges them, one
/// `HMGET` and one `HSET` store the outcomes not stored yet; one `RPUSH`
/// per reply list notifies.
///
/// Acknowledged entries leave their streams in bulk, cheaply: the group
/// delivers a stream in order, so every entry older than the oldest one
/// still pending (or, with none pending, than the newest one acknowledged
/// here) was delivered and acknowledged, and one `XTRIM MINID` drops them
/// all. (An `XDEL` per entry costs the server more than the rest of the
/// commit: it scans the entry's node.) `STREAM:stale` counts the
/// acknowledged entries still in the stream, so that its length minus its
/// pending entries minus its stale ones is exactly what is queued; the trim
/// runs each time that count passes a multiple of 64.
///
/// ARGV: ns, group, consumer, then per entry: stream, entry, id, outcome,
/// reply, dead (0/1), f, n, error text.
/// Returns a code per entry: 1 (committed), 2 (a result was already
/// stored), 0 (fenced off).
const COMPLETE: &str = r"
local ns, group, me = ARGV[1], ARGV[2], ARGV[3]
local TRIM = 64
-- Entry ids as numbers, parsed once each: (milliseconds, sequence).
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(am, as, bm, bs)
  return am < bm or (am == bm and as < bs)
end
-- Appends `v` to the list of `key` in `groups`, `order` keeping the keys
-- in first-seen order.
local function add(groups, order, key, v)
  if not groups[key] then
    groups[key] = {}
    order[#order + 1] = key
  end
  table.insert(groups[key], v)
end
-- The position in the reply of the entry whose arguments start at ARGV[i].
local function slot(i)
  return (i - 4) / 9 + 1
end
local out = {}
local committed, fenced = 0, 0
local by, streams = {}, {}
for i = 4, #ARGV, 9 do add(by, streams, ARGV[i], i) end
local replies, reply_keys = {}, {}
local stored = {}
for _, s in ipairs(streams) do
  local idx = by[s]
  local ms, sq = {}, {}
  local lo, hi = idx[1], idx[1]
  for _, i in ipairs(idx) do
    ms[i], sq[i] = parse(ARGV[i + 1])
    if before(ms[i], sq[i], ms[lo], sq[lo]) then lo = i end
    if before(ms[hi], sq[hi], ms[i], sq[i]) then hi = i end
  end
  local mine = {}
  for _, p in ipairs(redis.call('XPENDING', s, group, ARGV[lo + 1], ARGV[hi + 1], 100000, me)) do
    mine[p[1]] = true
  end
  local acked, owned = {}, {}
  local newest = nil
  for _, i in ipairs(idx) do
    local k = slot(i)
    if mine[ARGV[i + 1]] then
      mine[ARGV[i + 1]] = nil
      acked[#acked + 1] = ARGV[i + 1]
      owned[#owned + 1] = i
      if not newest or before(ms[newest], sq[newest], ms[i], sq[i]) then newest = i end
    else
      out[k] = 0
      fenced = fenced + 1
    end
  end
  if #acked > 0 then
    redis.call('XACK', s, group, unpack(acked))
    local ids = {}
    for _, i in ipairs(owned) do ids[#ids + 1] = ARGV[i + 2] end
    local have = redis.call('HMGET', ns .. ':results', unpack(ids))
    local set = {}
    for j, i in ipairs(owned) do
      local k = slot(i)
      local id = ARGV[i + 2]
      if have[j] or stored[id] then
        out[k] = 2
      else
        stored[id] = true
        set[#set + 1] = id
        set[#set + 1] = ARGV[i + 3]
        committed = committed + 1
        if ARGV[i + 5] == '1' then
          redis.call('XADD', ns .. ':dead', '*', 'id', id, 'f', ARGV[i + 6], 'n', ARGV[i + 7],
            'error', ARGV[i + 8])
        end
        if ARGV[i + 4] ~= '' then add(replies, reply_keys, ARGV[i + 4], id) end
        out[k] = 1
      end
    end
    if #set > 0 then redis.call('HSET', ns .. ':results', unpack(set)) end
    -- Every acknowledged entry stays in the stream, counted as stale,
    -- until a trim: one each time the count passes a multiple of TRIM.
    local stale = redis.call('INCRBY', s .. ':stale', #acked)
    if math.floor(stale / TRIM) > math.floor((stale - #acked) / TRIM) then
      local bm, bs
      local summary = redis.call('XPENDING', s, group)
      if summary[1] > 0 then
        bm, bs = parse(summary[2])
      else
        bm, bs = ms[newest], sq[newest] + 1
      end
      local trimmed = redis.call('XTRIM', s, 'MINID', string.format('%.0f-%.0f', bm, bs))
      if trimmed > 0 then redis.call('DECRBY', s .. ':stale', trimmed) end
    end
  end
end
for _, r in ipairs(reply_keys) do redis.call('RPUSH', r, unpack(replies[r])) end
if committed > 0 then redis.call('INCRBY', ns .. ':stat:completed', committed) end
if fenced > 0 then redis.call('INCRBY', ns .. ':stat:fenced', fenced) end
return out
";

/// Takes an entry from `consumer` and queues the task again, fenced like
/// [`COMPLETE`]: with attempt + 1 (`bump` = 1) after `delay_ms` (0: at once,
/// at the end of the stream). If the attempts are used up it commits
/// `final_outcome` instead and adds a dead letter.
///
/// KEYS: stream. ARGV: ns, group, consumer, entry, bump, delay_ms,
/// final_outcome, error text, stat name.
/// Returns 1 (queued again), 2 (dead-lettered), 0 (fenced off or gone).
const REQUEUE: &str = r"
redis.replicate_commands()
local ns = ARGV[1]
local p = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[4], ARGV[4], 1, ARGV[3])
if #p == 0 then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[4])
redis.call('XACK', KEYS[1], ARGV[2], ARGV[4])
redis.call('XDEL', KEYS[1], ARGV[4])
if #e == 0 then return 0 end
local f = e[1][2]
local id, fname, reply = '', '', ''
local n, m = 1, 1
for i = 1, #f, 2 do
  local k = f[i]
  if k == 'n' then
    n = tonumber(f[i + 1]) + tonumber(ARGV[5])
    f[i + 1] = tostring(n)
  elseif k == 'm' then m = tonumber(f[i + 1])
  elseif k == 'id' then id = f[i + 1]
  elseif k == 'f' then fname = f[i + 1]
  elseif k == 'r' then reply = f[i + 1]
  end
end
if n > m then
  if redis.call('HSETNX', ns .. ':results', id, ARGV[7]) == 1 then
    redis.call('INCR', ns .. ':stat:completed')
    redis.call('XADD', ns .. ':dead', '*', 'id', id, 'f', fname, 'n', tostring(n - 1),
      'error', ARGV[8])
    if reply ~= '' then redis.call('RPUSH', reply, id) end
  end
  return 2
end
if ARGV[9] ~= '' then redis.call('INCR', ns .. ':stat:' .. ARGV[9]) end
local delay = tonumber(ARGV[6])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local key = ns .. ':d:' .. id
  redis.call('DEL', key)
  redis.call('HSET', key, 's', KEYS[1])
  redis.call('HSET', key, unpack(f))
  redis.call('ZADD', ns .. ':delayed', now + delay, id)
else
  redis.call('XADD', KEYS[1], '*', unpack(f))
end
return 1
";

/// Moves up to ARGV[2] delayed tasks that are due to their streams.
///
/// ARGV: ns, max. Returns how many moved.
const MOVE_DUE: &str = r"
local ns = ARGV[1]
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', ns .. ':delayed', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local key = ns .. ':d:' .. id
  local h = redis.call('HGETALL', key)
  redis.call('ZREM', ns .. ':delayed', id)
  redis.call('DEL', key)
  local s = nil
  local fields = {}
  for i = 1, #h, 2 do
    if h[i] == 's' then s = h[i + 1]
    else
      fields[#fields + 1] = h[i]
      fields[#fields + 1] = h[i + 1]
    end
  end
  if s then redis.call('XADD', s, '*', unpack(fields)) end
end
return #due
";

/// Takes a lease (`SET key token NX PX ms`) or renews one this token holds.
///
/// KEYS: key. ARGV: token, ms. Returns 1 if held.
const LEASE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Removes `consumer` from the group of `stream` if it holds no entry
/// (deleting a consumer drops its pending entries: never do that to one
/// that holds any).
///
/// KEYS: stream. ARGV: group, consumer. Returns 1 if removed.
const FORGET: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
";

macro_rules! script {
    ($name:ident, $src:ident) => {
        pub(crate) fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new($src))
        }
    };
}

script!(submit, SUBMIT);
script!(complete, COMPLETE);
script!(requeue, REQUEUE);
script!(move_due, MOVE_DUE);
script!(lease, LEASE);
script!(forget, FORGET);

/// Every script, for loading after `NOSCRIPT`.
pub(crate) fn all() -> [&'static Script; 6] {
    [
        submit(),
        complete(),
        requeue(),
        move_due(),
        lease(),
        forget(),
    ]
}
