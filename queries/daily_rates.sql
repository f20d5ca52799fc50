-- Per day (dt, UTC) and campaign: how many messages were delivered, bounced (in band and out of band) and complained about, and the bounce and complaint rates.
-- Reads events_dedup (create it first: events_dedup_view.sql). Rates are fractions (0.05 = 5 %),
-- NULL when their denominator is 0. Add `AND dt BETWEEN '2024-01-01' AND '2024-01-31'` to the
-- WHERE clause to scan fewer partitions.
SELECT
  dt,
  campaign_id,
  count(*) FILTER (WHERE type = 'injection') AS injections,
  count(*) FILTER (WHERE type = 'delivery') AS deliveries,
  count(*) FILTER (WHERE type = 'bounce') AS bounces,
  count(*) FILTER (WHERE type = 'out_of_band') AS out_of_band_bounces,
  count(*) FILTER (WHERE type = 'spam_complaint') AS complaints,
  count(*) FILTER (WHERE type IN ('list_unsubscribe', 'link_unsubscribe')) AS unsubscribes,
  CAST(count(*) FILTER (WHERE type = 'bounce') AS double)
    / NULLIF(count(*) FILTER (WHERE type IN ('delivery', 'bounce')), 0) AS bounce_rate,
  CAST(count(*) FILTER (WHERE type = 'spam_complaint') AS double)
    / NULLIF(count(*) FILTER (WHERE type = 'delivery'), 0) AS complaint_rate,
  CAST(count(*) FILTER (WHERE type IN ('list_unsubscribe', 'link_unsubscribe')) AS double)
    / NULLIF(count(*) FILTER (WHERE type = 'delivery'), 0) AS unsubscribe_rate
FROM events_dedup
WHERE event_type IN (
  'injection', 'delivery', 'bounce', 'out_of_band', 'spam_complaint',
  'list_unsubscribe', 'link_unsubscribe'
)
GROUP BY dt, campaign_id
ORDER BY dt, campaign_id;
