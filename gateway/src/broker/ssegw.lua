#!lua name=ssegw
-- The SSE gateway's durable publish path (docs/ARCHITECTURE.md, "Resume on any node").
-- Every gateway node loads this library when its Redis lacks it or holds an older VERSION
-- (a newer one, loaded by a newer node, is left alone).
--
-- Keys: `ssegw:epoch` (made on first use from Redis's clock: a Redis restarted without
-- persistence gets a new one, so ids of before make resumes reset, never replay wrong
-- events), `ssegw:seq` (one counter for every channel: a total order, so a stream over
-- several channels resumes from one id), `ssegw:h:<channel>` (a list: a floor entry
-- `F <trimmed_upto> <created_s>`, then the channel's last `history` envelopes, oldest first;
-- it expires after `ttl_s` without a publish).
--
-- Envelope (what is published and kept): "\30ssegw:1 <epoch>-<seq>-<unix_s>\n<payload>".
-- The first byte (0x1E, record separator) starts no JSON text.
local VERSION = 1
local PREFIX = '\30ssegw:1 '

local function epoch()
  local e = redis.call('GET', 'ssegw:epoch')
  if e then
    return e
  end
  local t = redis.call('TIME')
  e = string.format('%x', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', 'ssegw:epoch', e)
  return e
end

-- FCALL ssegw_publish 1 <channel> <payload> [history=64] [ttl_s=3600]
-- Appends the event to the channel's history and publishes its envelope, atomically;
-- returns PUBLISH's receiver count.
local function publish(keys, args)
  local channel, payload = keys[1], args[1]
  local history = tonumber(args[2] or '64')
  local ttl = tonumber(args[3] or '3600')
  if not channel or not payload or not history or not ttl or history < 0 or ttl < 1 then
    return redis.error_reply('usage: FCALL ssegw_publish 1 <channel> <payload> [history] [ttl_s]')
  end
  local e = epoch()
  local seq = string.format('%d', redis.call('INCR', 'ssegw:seq'))
  local now = redis.call('TIME')[1]
  local env = PREFIX .. e .. '-' .. seq .. '-' .. now .. '\n' .. payload
  local key = 'ssegw:h:' .. channel
  local n = redis.call('RPUSH', key, env)
  if n == 1 then
    redis.call('LPUSH', key, 'F 0 ' .. now)
    n = 2
  end
  local excess = n - 1 - history
  if excess > 0 then
    local last = redis.call('LINDEX', key, excess)
    local floor = redis.call('LINDEX', key, 0)
    local created = string.match(floor, '^F %d+ (%d+)$') or now
    local trimmed = string.match(last, '^\30ssegw:1 %w+%-(%d+)%-') or seq
    redis.call('LTRIM', key, excess, -1)
    redis.call('LSET', key, 0, 'F ' .. trimmed .. ' ' .. created)
  end
  redis.call('EXPIRE', key, ttl)
  return redis.call('PUBLISH', channel, env)
end

-- FCALL_RO ssegw_read <n> <history keys...> <after_seq> <max_bytes>
-- {epoch or '', counter, now_s, over (0/1), then per key {floor or '', envelopes after
-- after_seq...}}; `over` is 1 (and the lists empty) when those envelopes exceed max_bytes.
local function read(keys, args)
  local after = tonumber(args[1] or '0') or 0
  local budget = tonumber(args[2] or '1048576') or 1048576
  local out = {
    redis.call('GET', 'ssegw:epoch') or '',
    redis.call('GET', 'ssegw:seq') or '0',
    redis.call('TIME')[1],
    0,
  }
  local lists = {}
  for i, key in ipairs(keys) do
    local items = redis.call('LRANGE', key, 0, -1)
    local list = { items[1] or '' }
    for j = 2, #items do
      local s = tonumber(string.match(items[j], '^\30ssegw:1 %w+%-(%d+)%-') or '0')
      if s > after then
        budget = budget - #items[j]
        list[#list + 1] = items[j]
      end
    end
    lists[i] = list
  end
  if budget < 0 then
    out[4] = 1
    for i = 1, #lists do
      lists[i] = { lists[i][1] }
    end
  end
  for i = 1, #lists do
    out[#out + 1] = lists[i]
  end
  return out
end

redis.register_function('ssegw_publish', publish)
redis.register_function {
  function_name = 'ssegw_read',
  callback = read,
  flags = { 'no-writes' },
}
redis.register_function {
  function_name = 'ssegw_version',
  callback = function()
    return VERSION
  end,
  flags = { 'no-writes' },
}
