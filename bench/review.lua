-- wrk script of scripts/load-bench: posts TokenReviews, rotating through a file of tokens.
--   wrk ... -s bench/review.lua URL -- TOKENS_FILE MODE RUN_ID
-- MODE "cached": the same few bodies again and again (after a first pass every answer is a cache
--   hit). Requests are prebuilt, so the load generator does almost no work per request.
-- MODE "new": every request carries a spec.audiences value never sent before. The audiences
--   are part of the gateway's cache key (and otherwise ignored), so every request is a cache
--   miss that verifies and maps the token: the cost of a new token, without minting millions.

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local heads, tails, prebuilt = {}, {}, {}
local mode, run, n, count = "cached", "0", 0, 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local file = args[1]
  mode = args[2] or "cached"
  run = (args[3] or "0") .. "-" .. tostring(tid or 0)
  local version = "authentication.k8s.io/" .. (args[4] or "v1")
  for token in io.lines(file) do
    if #token > 0 then
      count = count + 1
      local head = '{"apiVersion":"' .. version .. '","kind":"TokenReview","spec":{"token":"' .. token .. '"'
      if mode == "cached" then
        prebuilt[count] = wrk.format("POST", nil, headers, head .. "}}")
      else
        heads[count] = head .. ',"audiences":["bench-' .. run .. "-"
        tails[count] = '"]}}'
      end
    end
  end
  -- threads start at different places in the rotation
  n = ((tid or 1) - 1) * 7919
end

function request()
  n = n + 1
  local i = n % count + 1
  if mode == "cached" then
    return prebuilt[i]
  end
  return wrk.format("POST", nil, headers, heads[i] .. n .. tails[i])
end
