/** Lua fragments shared by the scripts of the persistence (scripts.ts) and the bus (bus-scripts.ts). */

/**
 * Move an inbox cursor (a stream id "ms-seq") forward, never back: commits of one node can be
 * written by two paths (with an enqueue batch, or on their own) in any order.
 */
export const CURSOR = `
local function advance(key, id)
  local cur = redis.call('GET', key)
  if cur then
    local a1, a2 = string.match(cur, '(%d+)-(%d+)')
    local b1, b2 = string.match(id, '(%d+)-(%d+)')
    a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
    if a1 > b1 or (a1 == b1 and a2 >= b2) then return end
  end
  redis.call('SET', key, id)
end
`;

