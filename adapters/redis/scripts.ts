/**
 * Lua scripts: each multi-key change is one script, so it is atomic against other nodes and
 * travels as one command in the auto-pipeline (ioredis sends EVAL once per connection, then
 * EVALSHA). Key names are in keys.ts. Every script touches the keys of one slot: one session,
 * several sessions of one session group, or the retained set. Message body keys derived from
 * ids inside a script (readQueue, deleteSession) carry the group's tag, so they are in the
 * slot of the keys the script was given.
 *
 * Bounds: a script's work is proportional to what the broker chose to send (a batch is split
 * into calls of at most MAX_BATCH entries by redis.ts) or to a session's stored state (bounded
 * by --max-queued-messages); variadic commands run in chunks of 1000 arguments.
 */

/** Drop one reference to a message body; delete it at zero. Guarded: an expired body is gone. */
const DECREF = `
local function decref(mk)
  if redis.call('EXISTS', mk) == 1 and redis.call('HINCRBY', mk, 'r', -1) <= 0 then
    redis.call('DEL', mk)
  end
end
`;

/** Rewrite a list from a Lua array, in chunks (unpack has a stack limit). */
const REWRITE = `
local function rewrite(key, items)
  redis.call('DEL', key)
  for i = 1, #items, 1000 do
    redis.call('RPUSH', key, unpack(items, i, math.min(i + 999, #items)))
  end
end
`;

/**
 * Fencing (cluster ownership, see bus.ts): a write of a session's state carries the token the
 * writer holds for it, checked against o:<cid> inside the script; '' = unfenced (a single node
 * with no ownership record, or the conformance suite).
 */
const FENCE = `
local function fenced(ownerKey, token)
  return token ~= '' and redis.call('HGET', ownerKey, 't') ~= token
end
`;


import { CHUNKED, CURSOR, SPREAD } from "./lua.ts";

export interface ScriptDef {
  lua: string;
  /**
   * The number of keys; a script with a variable number (spread) declares only its first key
   * and gets the others in ARGV (see SPREAD).
   */
  keys: number;
}


/**
 * KEYS: target, the group's sessions set, owner. ARGV: cid, mode, token, values...
 * mode "hash!" replaces the hash (DEL + HSET), "hash" merges fields, "set" adds members,
 * "hdel" deletes fields, "srem" removes members.
 */
export const touch: ScriptDef = {
  keys: 3,
  lua: FENCE + CHUNKED + `
if fenced(KEYS[3], ARGV[3]) then return redis.error_reply('FENCED') end
local mode = ARGV[2]
if mode == 'hdel' then chunked('HDEL', KEYS[1], 4) return 1 end
if mode == 'srem' then chunked('SREM', KEYS[1], 4) return 1 end
if mode == 'hash!' then redis.call('DEL', KEYS[1]) end
if mode == 'set' then chunked('SADD', KEYS[1], 4) else chunked('HSET', KEYS[1], 4) end
redis.call('SADD', KEYS[2], ARGV[1])
return 1`,
};

/**
 * Session keys derived inside a script from the group's key base (Group.base: the prefix with
 * the group's hash tag) and a client id, so that a call names each key with one short argument
 * instead of several long ones: ioredis's cost per argument, not Redis, bounds a Redis-backed
 * QoS 1 flow. The derived keys carry the group's tag: they are in the slot of KEYS[1].
 * `body(cid)` is the prefix of the message body keys a session uses (bodies per group, or per
 * session: then the client id's byte length and the id).
 */
const DERIVE = `
local B, PER_SESSION = ARGV[1], ARGV[2] == '1'
local function body(cid)
  if PER_SESSION then return B .. 'm:' .. #cid .. ':' .. cid .. ':' end
  return B .. 'm:'
end
`;

/**
 * The enqueues of one tick for the sessions of one group, in one call (a fan-out to many
 * persistent sessions, a read full of publishes). KEYS: the group's sessions set. ARGV: the
 * group's key base, bodies per session ('1') or per group (''), grace ms, number of calls, the
 * inbox these enqueues came from and its position ('' = none: the cluster bus stages the
 * position of the inbox entries read in this tick, so that the group's cursor of that node
 * moves exactly when their enqueues into the group are stored), then per call cid, number of
 * entries, fencing token, then per entry id, meta, blob ('' = body stored already or sent
 * earlier in this call), expiresAt ('' = none). The queue, entries, owner and body keys are
 * derived (DERIVE).
 * Returns {missing, fenced}: the ids whose body was not sent and is not stored (nothing written
 * then), and the client ids whose token is stale (their entries are not written).
 */
export const enqueueMany: ScriptDef = {
  keys: 1,
  lua: FENCE + CURSOR + DERIVE + `
local grace, calls = tonumber(ARGV[3]), tonumber(ARGV[4])
local missing, sent, fence = {}, {}, {}
local a = 7
for c = 1, calls do
  local cid, n = ARGV[a], tonumber(ARGV[a + 1])
  local e, bp = B .. 'e:' .. cid, body(cid)
  if fenced(B .. 'o:' .. cid, ARGV[a + 2]) then fence[#fence + 1] = cid end
  a = a + 3
  for j = 1, n do
    local id, blob = ARGV[a], ARGV[a + 2]
    if blob ~= '' then sent[bp .. id] = true
    elseif not sent[bp .. id] and redis.call('HEXISTS', e, id) == 0 and redis.call('EXISTS', bp .. id) == 0 then
      missing[#missing + 1] = id
    end
    a = a + 4
  end
end
if #missing > 0 then return { missing, fence } end
if ARGV[5] ~= '' then advanceField(B .. 'cur', ARGV[5], ARGV[6]) end
a = 7
for c = 1, calls do
  local cid, n = ARGV[a], tonumber(ARGV[a + 1])
  local q, e, bp = B .. 'q:' .. cid, B .. 'e:' .. cid, body(cid)
  local skip = fenced(B .. 'o:' .. cid, ARGV[a + 2])
  a = a + 3
  if not skip then redis.call('SADD', KEYS[1], cid) end
  for j = 1, n do
    local id = ARGV[a]
    local mk = bp .. id
    if not skip and redis.call('HSET', e, id, ARGV[a + 1]) == 1 then
      redis.call('RPUSH', q, id)
      if redis.call('HINCRBY', mk, 'r', 1) == 1 then
        redis.call('HSET', mk, 'b', ARGV[a + 2])
        if ARGV[a + 3] ~= '' then
          redis.call('HSET', mk, 'x', ARGV[a + 3])
          redis.call('PEXPIREAT', mk, tonumber(ARGV[a + 3]) + grace)
        end
      end
    end
    a = a + 4
  end
end
return { missing, fence }`,
};

/** KEYS: e, owner. ARGV: id, meta, token. Only an existing entry is updated. */
export const updateEntry: ScriptDef = {
  keys: 2,
  lua: FENCE + `
if fenced(KEYS[2], ARGV[3]) then return redis.error_reply('FENCED') end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1`,
};

/**
 * Many removeEntry of one group in one call: KEYS: the group's sessions set (for the slot).
 * ARGV: the group's key base, bodies per session ('1') or not (see DERIVE), then cid1, id1,
 * token1, cid2, id2, token2, ... (the acknowledgements handled in one tick, see
 * RedisPersistence.removeOutgoing). Returns the positions (1-based) refused by their fence.
 */
export const removeEntries: ScriptDef = {
  keys: 1,
  lua: DECREF + FENCE + DERIVE + `
local refused = {}
for j = 1, (#ARGV - 2) / 3 do
  local a = 3 * j
  local cid, id = ARGV[a], ARGV[a + 1]
  if fenced(B .. 'o:' .. cid, ARGV[a + 2]) then
    refused[#refused + 1] = j
  elseif redis.call('HDEL', B .. 'e:' .. cid, id) == 1 then
    redis.call('LREM', B .. 'q:' .. cid, 1, id)
    decref(body(cid) .. id)
  end
end
return refused`,
};

/**
 * KEYS: q, e. ARGV: now ms, msg key prefix.
 * Returns [id, meta, blob, ...] in FIFO order; entries whose message expired (expiresAt < now)
 * or whose body is gone are removed on the way, with their reference.
 */
export const readQueue: ScriptDef = {
  keys: 2,
  lua: DECREF + REWRITE + `
local now = tonumber(ARGV[1])
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
if #ids == 0 then return {} end
local flat = redis.call('HGETALL', KEYS[2])
local meta = {}
for i = 1, #flat, 2 do meta[flat[i]] = flat[i + 1] end
local out, keep, dropped = {}, {}, false
for _, id in ipairs(ids) do
  local m = meta[id]
  if m == nil then
    dropped = true
  else
    local mk = ARGV[2] .. id
    local body = redis.call('HMGET', mk, 'b', 'x')
    if body[1] == false or (body[2] ~= false and tonumber(body[2]) < now) then
      dropped = true
      redis.call('HDEL', KEYS[2], id)
      decref(mk)
    else
      keep[#keep + 1] = id
      out[#out + 1] = id
      out[#out + 1] = m
      out[#out + 1] = body[1]
    end
  end
end
if dropped then rewrite(KEYS[1], keep) end
return out`,
};

/** KEYS: s, sub, q, e, in2, the group's sessions set, owner. ARGV: cid, msg key prefix, token. */
export const deleteSession: ScriptDef = {
  keys: 7,
  lua: DECREF + FENCE + `
if fenced(KEYS[7], ARGV[3]) then return redis.error_reply('FENCED') end
for _, id in ipairs(redis.call('HKEYS', KEYS[4])) do decref(ARGV[2] .. id) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SREM', KEYS[6], ARGV[1])
return 1`,
};

/**
 * KEYS: ret, retbytes, then the topic's index sets. ARGV: op, topic, blob | header, then for
 * put the quota: max messages, max bytes (0 = no limit).
 * op "put" stores (returns 1, or -1 / -2 when the quota refuses it: nothing changed); "del"
 * deletes; "delif" deletes only if the stored blob starts with the given header (the same
 * message: an expired one is not allowed to delete its replacement). retbytes holds the payload
 * bytes of every stored blob (what follows its header's "\n", codec.ts).
 */
export const retained: ScriptDef = {
  keys: 1,
  lua: SPREAD + `
local op, topic = ARGV[1], ARGV[2]
local function payload(v) return #v - string.find(v, '\\n', 1, true) end
local old = redis.call('HGET', KEYS[1], topic)
if op == 'put' then
  local grow = payload(ARGV[3]) - (old and payload(old) or 0)
  local maxm, maxb = tonumber(ARGV[4] or '0'), tonumber(ARGV[5] or '0')
  if not old and maxm > 0 and redis.call('HLEN', KEYS[1]) >= maxm then return -1 end
  if grow > 0 and maxb > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') + grow > maxb then return -2 end
  redis.call('HSET', KEYS[1], topic, ARGV[3])
  for i = 3, #KEYS do redis.call('SADD', KEYS[i], topic) end
  if grow ~= 0 and redis.call('INCRBY', KEYS[2], grow) == 0 then redis.call('DEL', KEYS[2]) end
  return 1
end
if old == false then return 1 end
if op == 'delif' and string.sub(old, 1, #ARGV[3]) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], topic)
for i = 3, #KEYS do redis.call('SREM', KEYS[i], topic) end
if redis.call('DECRBY', KEYS[2], payload(old)) == 0 then redis.call('DEL', KEYS[2]) end
return 1`,
};
