-- Which recipient domains bounce, and why: bounces (in band and out of band) per SparkPost bounce class and recipient domain, most frequent first.
-- Reads events_dedup (create it first: events_dedup_view.sql). Classes and categories are
-- SparkPost's bounce classification; an unknown class reads 'Unknown'. Add
-- `AND dt BETWEEN '2024-01-01' AND '2024-01-31'` to the WHERE clause to scan fewer partitions.
SELECT
  bounce_class,
  CASE
    WHEN bounce_class IN (10, 30, 90) THEN 'Hard'
    WHEN bounce_class IN (20, 21, 22, 23, 24, 40, 60, 70, 100) THEN 'Soft'
    WHEN bounce_class IN (50, 51, 52, 53, 54) THEN 'Block'
    WHEN bounce_class IN (25, 26, 80) THEN 'Admin'
    WHEN bounce_class = 1 THEN 'Undetermined'
    ELSE 'Unknown'
  END AS bounce_category,
  lower(split_part(rcpt_to, '@', 2)) AS recipient_domain,
  count(*) AS bounces,
  count(*) FILTER (WHERE type = 'out_of_band') AS out_of_band_bounces,
  count(DISTINCT lower(rcpt_to)) AS recipients,
  min(dt) AS first_dt,
  max(dt) AS last_dt
FROM events_dedup
WHERE event_type IN ('bounce', 'out_of_band')
GROUP BY 1, 2, 3
ORDER BY bounces DESC, bounce_class, recipient_domain;
