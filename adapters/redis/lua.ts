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
