-- SPDX-License-Identifier: MIT
-- wrk script for `make bench`: replays pre-signed Twilio status callbacks.
--
-- Environment:
--   BENCH_REQS   prefix of the slice files written by `gen_callbacks gen`
--                (PREFIX.0, PREFIX.1, ...: one per wrk thread)
--   BENCH_STATS  file that done() writes its key=value results to
--
-- Thread i (numbered from 1 by setup) loads slice i-1, pre-formats every
-- request once, and sends them in file order, starting over at the end.  It
-- counts the requests it actually sent and the answers by status, so that
-- bench/run.sh can tell gen_callbacks exactly which prefix of each slice went
-- out and check the database against it.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

local reqs, n, pos
issued, responses, ok, non2xx, lines = 0, 0, 0, {}, 0

function init(args)
   local prefix = assert(os.getenv("BENCH_REQS"), "BENCH_REQS is not set")
   local path = prefix .. "." .. (id - 1)
   local f = assert(io.open(path, "r"))
   reqs = {}
   for line in f:lines() do
      local sig, body = line:match("^%d+\t%d\t([^\t]*)\t(.*)$")
      assert(sig, path .. ": malformed line " .. (#reqs + 1))
      reqs[#reqs + 1] = wrk.format("POST", "/webhooks/twilio/status", {
         ["Content-Type"] = "application/x-www-form-urlencoded",
         ["X-Twilio-Signature"] = sig,
         ["User-Agent"] = "TwilioProxy/1.1",
      }, body)
   end
   f:close()
   n = #reqs
   lines = n
   assert(n > 0, path .. " is empty")
   pos = 1
   -- wrk calls request() once on the first thread's state, before that
   -- thread runs, to check the request it returns; that one is never sent.
   verify_call = (id == 1)
end

function request()
   if verify_call then
      verify_call = false
      return reqs[1]
   end
   local r = reqs[pos]
   pos = pos + 1
   if pos > n then
      pos = 1
   end
   issued = issued + 1
   return r
end

function response(status, headers, body)
   responses = responses + 1
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      non2xx[status] = (non2xx[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local path = assert(os.getenv("BENCH_STATS"), "BENCH_STATS is not set")
   local out = assert(io.open(path, "w"))
   local prefix = os.getenv("BENCH_REQS")
   local t_issued, t_resp, t_ok, codes, slices = 0, 0, 0, {}, {}
   for _, t in ipairs(threads) do
      local tid = t:get("id")
      t_issued = t_issued + t:get("issued")
      t_resp = t_resp + t:get("responses")
      t_ok = t_ok + t:get("ok")
      for code, c in pairs(t:get("non2xx")) do
         codes[code] = (codes[code] or 0) + c
      end
      slices[#slices + 1] = string.format("%s.%d:%d", prefix, tid - 1, t:get("issued"))
      out:write(string.format("thread%d_lines=%d\nthread%d_issued=%d\n", tid,
                              t:get("lines"), tid, t:get("issued")))
   end
   local bad, bad_list = 0, {}
   for code, c in pairs(codes) do
      bad = bad + c
      bad_list[#bad_list + 1] = code .. "x" .. c
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   out:write(string.format("duration_s=%.3f\n", secs))
   out:write(string.format("requests=%d\n", summary.requests))
   out:write(string.format("req_per_s=%.1f\n", summary.requests / secs))
   out:write(string.format("ok_per_s=%.1f\n", t_ok / secs))
   out:write(string.format("issued=%d\nresponses=%d\nok=%d\nnon2xx=%d\n",
                           t_issued, t_resp, t_ok, bad))
   out:write(string.format("non2xx_codes='%s'\n", table.concat(bad_list, " ")))
   out:write(string.format("err_connect=%d\nerr_read=%d\nerr_write=%d\nerr_timeout=%d\n",
                           e.connect, e.read, e.write, e.timeout))
   out:write(string.format("lat_mean_us=%.0f\nlat_max_us=%d\n", latency.mean, latency.max))
   for _, p in ipairs({50, 90, 99, 99.9}) do
      out:write(string.format("lat_p%s_us=%d\n", tostring(p):gsub("%.", "_"),
                              latency:percentile(p)))
   end
   out:write(string.format("slices='%s'\n", table.concat(slices, " ")))
   out:close()
end
