-- The top 8 functions by cumtime, and their cumtime in each 10-second slice
-- (slices since the epoch, as timeslices.py --slice 10s --align epoch), over
-- every process in the table; production-mode lines are divided by their
-- duty, as the tools do: statsprof gives it over span_s, the record's
-- interval and the intervals with no window before it, so the sums
-- estimate the whole run.
SELECT
    toDateTime(intDiv(ts_ns, 10000000000) * 10) AS slice,
    key,
    sum(cumtime / if(duty > 0, duty, 1)) AS cumtime_s
FROM statsprof_rows
WHERE row = 'function' AND kind = 'delta'
  AND key IN
  (
      SELECT key
      FROM statsprof_rows
      WHERE row = 'function' AND kind = 'delta'
      GROUP BY key
      ORDER BY sum(cumtime / if(duty > 0, duty, 1)) DESC, key
      LIMIT 8
  )
GROUP BY slice, key
ORDER BY slice, cumtime_s DESC, key
