-- wrk's done() hook for harness/load/wrk.py: writes the run's totals and wrk's whole
-- latency table as JSON (format 1) to the file named by GWBENCH_WRK_REPORT.
--
-- It defines no request() or response() hook, so wrk keeps sending one pre-built
-- request and never hands a response to Lua (its fast path).
--
-- wrk 4.x keeps latencies (microseconds) as a table of counts indexed by value. The
-- documented way to read it, latency(i) (the i-th distinct value and its count), scans
-- the table from its minimum on every call: reading it all costs (distinct values) x
-- (their spread in us), minutes for a run whose latencies spread over seconds. So the
-- table is read once through LuaJIT's FFI instead (wrk's `stats` struct, src/stats.h),
-- and only if that read agrees with wrk's own min, max, count and number of distinct
-- values; otherwise, or with GWBENCH_WRK_DISTRIBUTION=api, through latency(i).

local function integer(x)
   return string.format("%.0f", x)
end

local function real(x)
   if x ~= x then
      return "null"
   end
   return string.format("%.17g", x)
end

local function read_api(latency)
   local pairs_ = {}
   for i = 1, #latency do
      local value, count = latency(i)
      pairs_[i] = "[" .. integer(value) .. "," .. integer(count) .. "]"
   end
   return pairs_
end

local function read_ffi(latency)
   local ok, ffi = pcall(require, "ffi")
   if not ok then
      return nil
   end
   ok = pcall(ffi.cdef, [[
      typedef struct {
         uint64_t count;
         uint64_t limit;
         uint64_t min;
         uint64_t max;
         uint64_t data[];
      } gwbench_wrk_stats;
   ]])
   if not ok then
      return nil
   end
   -- The userdata holds a `stats *` (script.c: checkstats).
   local stats
   ok, stats = pcall(function()
      return ffi.cast("gwbench_wrk_stats **", latency)[0]
   end)
   if not ok then
      return nil
   end
   local low, high = tonumber(stats.min), tonumber(stats.max)
   if low ~= latency.min or high ~= latency.max or (low <= high and high >= tonumber(stats.limit)) then
      return nil
   end
   local pairs_, total = {}, 0
   for value = low, high do
      local count = tonumber(stats.data[value])
      if count ~= 0 then
         pairs_[#pairs_ + 1] = "[" .. integer(value) .. "," .. integer(count) .. "]"
         total = total + count
      end
   end
   if total ~= tonumber(stats.count) or #pairs_ ~= #latency then
      return nil
   end
   return pairs_
end

done = function(summary, latency, requests)
   local path = os.getenv("GWBENCH_WRK_REPORT")
   if path == nil or path == "" then
      io.stderr:write("wrk_report.lua: GWBENCH_WRK_REPORT is not set\n")
      os.exit(3)
   end
   local source, table_ = "ffi", nil
   if os.getenv("GWBENCH_WRK_DISTRIBUTION") ~= "api" then
      table_ = read_ffi(latency)
   end
   if table_ == nil then
      source, table_ = "api", read_api(latency)
   end
   local errors = summary.errors
   local parts = {
      '{"format": 1',
      ', "duration_us": ', integer(summary.duration),
      ', "requests": ', integer(summary.requests),
      ', "bytes": ', integer(summary.bytes),
      ', "errors": {"connect": ', integer(errors.connect),
      ', "read": ', integer(errors.read),
      ', "write": ', integer(errors.write),
      ', "status": ', integer(errors.status),
      ', "timeout": ', integer(errors.timeout), '}',
   }
   if #table_ > 0 then
      parts[#parts + 1] = ', "latency_us": {"min": ' .. integer(latency.min)
         .. ', "max": ' .. integer(latency.max)
         .. ', "mean": ' .. real(latency.mean)
         .. ', "stdev": ' .. real(latency.stdev)
         .. ', "p50": ' .. integer(latency:percentile(50))
         .. ', "p90": ' .. integer(latency:percentile(90))
         .. ', "p99": ' .. integer(latency:percentile(99))
         .. ', "p999": ' .. integer(latency:percentile(99.9)) .. '}'
   else
      parts[#parts + 1] = ', "latency_us": null'
   end
   parts[#parts + 1] = ', "distribution_source": "' .. source .. '"'
   parts[#parts + 1] = ', "distribution_us": [' .. table.concat(table_, ",") .. "]}\n"
   local file = assert(io.open(path .. ".tmp", "w"))
   file:write(table.concat(parts))
   file:close()
   assert(os.rename(path .. ".tmp", path))
end
