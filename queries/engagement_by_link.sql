-- Per day and campaign, which links were clicked and how often, next to the campaign's opens: one row per clicked link (target_link_url), or one row with a NULL link for a campaign that was opened but not clicked.
-- Reads events_dedup (create it first: events_dedup_view.sql). Opens carry no link, so the open
-- columns are the campaign's and repeat on each of its link rows: do not sum them over links.
-- AMP opens and clicks count with the plain ones; click_to_open is unique clickers of the link
-- over the campaign's unique openers.
WITH clicks AS (
  SELECT
    dt,
    campaign_id,
    target_link_url,
    max(target_link_name) AS target_link_name,
    count(*) AS clicks,
    count(DISTINCT lower(rcpt_to)) AS unique_clickers
  FROM events_dedup
  WHERE event_type IN ('click', 'amp_click')
  GROUP BY dt, campaign_id, target_link_url
),
opens AS (
  SELECT
    dt,
    campaign_id,
    count(*) FILTER (WHERE type IN ('open', 'amp_open')) AS opens,
    count(*) FILTER (WHERE type IN ('initial_open', 'amp_initial_open')) AS initial_opens,
    count(DISTINCT lower(rcpt_to)) AS unique_openers
  FROM events_dedup
  WHERE event_type IN ('open', 'initial_open', 'amp_open', 'amp_initial_open')
  GROUP BY dt, campaign_id
)
SELECT
  coalesce(c.dt, o.dt) AS dt,
  coalesce(c.campaign_id, o.campaign_id) AS campaign_id,
  c.target_link_url,
  c.target_link_name,
  coalesce(c.clicks, 0) AS clicks,
  coalesce(c.unique_clickers, 0) AS unique_clickers,
  coalesce(o.opens, 0) AS campaign_opens,
  coalesce(o.initial_opens, 0) AS campaign_initial_opens,
  coalesce(o.unique_openers, 0) AS campaign_unique_openers,
  CAST(c.unique_clickers AS double) / NULLIF(o.unique_openers, 0) AS click_to_open
FROM clicks AS c
FULL OUTER JOIN opens AS o
  ON c.dt = o.dt
  AND coalesce(c.campaign_id, '') = coalesce(o.campaign_id, '')
ORDER BY dt, campaign_id, clicks DESC, c.target_link_url;
