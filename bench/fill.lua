-- wrk script of scripts/memory-bench: bench/review.lua that stops after a number of answers.
--   wrk -t1 ... -s bench/fill.lua URL -- TOKENS_FILE MODE RUN_ID COUNT
-- With MODE "new" every request is a cache miss that inserts, so the gateway ends up holding
-- exactly COUNT more cache entries (up to a few more with many connections: those in flight).
-- NB: wrk stops sending at COUNT but exits only when its duration (-d) is over.
-- Run wrk from the repository's root (the path below is relative).

dofile("bench/review.lua")

local review_init, limit, answered = init, 0, 0

function init(args)
  limit = tonumber(args[4]) or 0
  review_init({ args[1], args[2], args[3] })
end

function response()
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end
