/** Lua fragments shared by the scripts of the persistence (scripts.ts) and the bus (bus-scripts.ts). */

/**
 * Inbox cursors (stream ids "ms-seq") move forward, never back: commits of one node can be
 * written by two paths (with an enqueue batch, or on their own) in any order. `advance` keeps
 * a position in a string key, `advanceField` in a hash field (a session group's cursor of one
 * node, see scripts.ts enqueueMany).
 */
export const CURSOR = `
local function behind(cur, id)
  if not cur then return true end
  local a1, a2 = string.match(cur, '(%d+)-(%d+)')
  local b1, b2 = string.match(id, '(%d+)-(%d+)')
  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
  return a1 < b1 or (a1 == b1 and a2 < b2)
end
local function advance(key, id)
  if behind(redis.call('GET', key), id) then redis.call('SET', key, id) end
end
local function advanceField(key, field, id)
  if behind(redis.call('HGET', key, field), id) then redis.call('HSET', key, field, id) end
end
`;

/** Run a variadic command over ARGV[from..] in chunks (unpack has a stack limit; step is even). */
export const CHUNKED = `
local function chunked(cmd, key, from)
  for i = from, #ARGV, 1000 do
    redis.call(cmd, key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
`;

/**
 * Scripts with a variable number of keys are called as `first key, number of other keys, other
 * keys..., arguments...` (spread() below) and see KEYS and ARGV as if every key had been
 * declared. Why: ioredis routes (and auto-pipelines) a call on a Redis Cluster by its first
 * argument, which must then be a key, not a key count. Redis lets a script use keys it did not
 * declare if they are in the same slot as those it did, which they are by design (keys.ts);
 * a key of another slot is refused by Redis Cluster with an error, never used.
 */
export const SPREAD = `
local K, A = { KEYS[1] }, {}
local nk = tonumber(ARGV[1])
for i = 1, nk do K[i + 1] = ARGV[i + 1] end
for i = nk + 2, #ARGV do A[#A + 1] = ARGV[i] end
local KEYS, ARGV = K, A
`;

/** [first key, n, other keys...] for a spread script. */
export function spread(keys: string[]): string[] {
  return [keys[0], String(keys.length - 1), ...keys.slice(1)];
}
