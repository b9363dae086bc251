/**
 * Lua scripts of the cluster bus (bus.ts); key names in keys.ts. Each is one atomic step that
 * other nodes may race: leases and lease checks use the Redis clock (TIME), so the nodes'
 * clocks never have to agree.
 */
import type { ScriptDef } from "./scripts.ts";
import { CURSOR } from "./lua.ts";

/** Append to the broadcast stream with the next sequence number. */
const BROADCAST = `
local function broadcast(bus, seqKey, kind, sender, data)
  local seq = redis.call('INCR', seqKey)
  return redis.call('XADD', bus, 'MAXLEN', '~', 10000, '*', 'k', kind, 's', sender, 'q', seq, 'd', data)
end
`;

/** Milliseconds on the Redis clock. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * KEYS: nodes. ARGV: self, lease ms.
 * Renews this node's lease; returns [now, node, expiry, node, expiry, ...].
 */
export const heartbeat: ScriptDef = {
  keys: 1,
  lua: NOW + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local out = { tostring(now) }
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all do out[#out + 1] = all[i] end
return out`,
};

/**
 * KEYS: routes:self, bus, busseq. ARGV: self, reset ('1': replace the set), json delta,
 * then '+' filters..., '-', filters... Returns the bus entry id.
 */
export const routes: ScriptDef = {
  keys: 3,
  lua: BROADCAST + `
if ARGV[2] == '1' then redis.call('DEL', KEYS[1]) end
local sign = '+'
for i = 4, #ARGV do
  local a = ARGV[i]
  if a == '+' or a == '-' then sign = a
  elseif sign == '+' then redis.call('SADD', KEYS[1], a)
  else redis.call('SREM', KEYS[1], a) end
end
return broadcast(KEYS[2], KEYS[3], 'r', ARGV[1], ARGV[3])`,
};

/**
 * KEYS: inbox of the target, nodes. ARGV: target, kind, sender, data.
 * Appends unless the target has left the cluster (then 0: its sessions live elsewhere now).
 */
export const send: ScriptDef = {
  keys: 2,
  lua: `
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then return 0 end
return redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 's', ARGV[3], 'd', ARGV[4])`,
};

/**
 * KEYS: o:<cid>, owned:self. ARGV: self, new token, mode, expected, cid.
 * mode: token (the owner's token is `expected`), node (the owner is node `expected`),
 * none (no owner), any. Returns the new token, or false.
 */
export const claim: ScriptDef = {
  keys: 2,
  lua: `
local cur = redis.call('HMGET', KEYS[1], 'n', 't')
local mode, expect = ARGV[3], ARGV[4]
if mode == 'token' and cur[2] ~= expect then return false end
if mode == 'node' and cur[1] ~= expect then return false end
if mode == 'none' and cur[2] ~= false then return false end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 't', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
return ARGV[2]`,
};

/** KEYS: o:<cid>, owned:self. ARGV: token, cid. Gives ownership up if the token is current. */
export const disown: ScriptDef = {
  keys: 2,
  lua: `
if redis.call('HGET', KEYS[1], 't') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[2])
return 1`,
};

/** KEYS: l:<cid>. ARGV: lock value. Deletes the lock if it is still ours. */
export const unlock: ScriptDef = {
  keys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`,
};

/**
 * KEYS: reap:<dead>, nodes. ARGV: dead node, self, lock ms.
 * The reaping right for a node whose lease has lapsed (Redis clock): 1 for exactly one caller.
 */
export const reapLock: ScriptDef = {
  keys: 2,
  lua: NOW + `
local exp = redis.call('ZSCORE', KEYS[2], ARGV[1])
if exp == false or tonumber(exp) > now then return 0 end
if redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then return 1 end
return 0`,
};

/**
 * KEYS: routes:<dead>, bus, busseq. ARGV: dead node, self.
 * First step of burying a dead node: its routes go from the store (a node joining now does not
 * load them) and every node is told to forget them. Returns the bus entry id.
 */
export const forget: ScriptDef = {
  keys: 3,
  lua: BROADCAST + `
redis.call('DEL', KEYS[1])
return broadcast(KEYS[2], KEYS[3], 'g', ARGV[2], ARGV[1])`,
};

/**
 * KEYS: nodes, in:<dead>, cur:<dead>, owned:<dead>, reap:<dead>. ARGV: dead node.
 * Last step of burying: the node and its inbox are gone.
 */
export const remove: ScriptDef = {
  keys: 5,
  lua: `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1`,
};

/**
 * KEYS: nodes, bus, busseq. ARGV: self.
 * Leaving: the lease ends now (survivors reap at once) and everyone is told.
 */
export const leave: ScriptDef = {
  keys: 3,
  lua: BROADCAST + `
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return broadcast(KEYS[2], KEYS[3], 'l', ARGV[1], ARGV[1])`,
};

/** KEYS: cur:self, in:self. ARGV: id. Remember the position, forget what is before it. */
export const commit: ScriptDef = {
  keys: 2,
  lua: CURSOR + `
advance(KEYS[1], ARGV[1])
redis.call('XTRIM', KEYS[2], 'MINID', redis.call('GET', KEYS[1]))
return 1`,
};
