-- statsprof records in the rows layout (sink=jsonl:PATH,layout=rows), one
-- table row per line. Load with:
--   clickhouse-client --input_format_skip_unknown_fields=1 \
--     --query 'INSERT INTO statsprof_rows FORMAT JSONEachRow' < prof.jsonl
-- Fields a line does not have are left at their defaults (0, '').
CREATE TABLE IF NOT EXISTS statsprof_rows
(
    ts Float64,                  -- end of the record's interval, s since the epoch
    start Float64,               -- its start
    interval_s Float64,
    ts_ns Int64,                 -- the same times, exact, in ns
    start_ns Int64,
    seq UInt64,
    pid Int64,
    host String,
    kind String,                 -- delta, thread, spike, cumulative
    thread_id UInt64,            -- thread records
    thread_name String,
    frame UInt64,                -- spike records
    duty Float64,                -- production mode: divide counts and times by it
                                 -- (over span_s: the sums estimate the whole run)
    row String,                  -- record, function or caller
    rows UInt32,                 -- record lines: lines in the record
    frame_time_s Float64,        -- record lines: the spike's frame time
    frames UInt64,               -- record lines: frame statistics
    frame_mean_s Float64,
    frame_p50_s Float64,
    frame_p95_s Float64,
    frame_p99_s Float64,
    frame_max_s Float64,
    observed_s Float64,          -- record lines, production mode
    span_s Float64,              -- the interval and the empty ones before it
    overhead_est Float64,
    dropped UInt64,              -- record lines: counters so far
    sink_errors UInt64,
    overflow_functions UInt64,
    total_tt Float64,
    key String,                  -- function and caller lines: file:line(function)
    file String,                 -- function lines
    line Int32,
    function String,
    caller_key String,           -- caller lines: the caller
    ncalls UInt64,               -- function and caller lines
    primitive_calls UInt64,
    tottime Float64,
    cumtime Float64,
    day Date MATERIALIZED toDate(toDateTime(intDiv(ts_ns, 1000000000)))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (row, kind, ts_ns, host, pid);
