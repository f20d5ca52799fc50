-- One row per event: the view `events_dedup` drops the at-least-once duplicates of `events` (redeliveries, replays), keeping the earliest received copy of each (type, event_id); events without an event_id (sms_status) are keyed by their raw JSON.
-- Without an event_id the key is the raw JSON with its whitespace removed (replace/chr exist in
-- both Athena and DuckDB): the archive keeps events compact, SparkPost may post them indented, so a
-- replayed copy differs from the original only in whitespace. (Two such events that differ only in
-- whitespace inside a string value would count as one.)
-- Create it once per database (Athena: scripts/query --named events_dedup_view); the other queries read it.
-- event_type and dt lead the window's PARTITION BY so that a filter on them is pushed below the
-- window and still prunes partitions (a copy always lands in the same event_type/dt, except an
-- event whose timestamp could not be read or is implausible, which is filed under its receive
-- date).
CREATE OR REPLACE VIEW events_dedup AS
SELECT
  event_id, type, event_class, "timestamp", timestamp_unparsed,
  message_id, transmission_id, campaign_id, template_id, template_version,
  subaccount_id, customer_id,
  rcpt_to, raw_rcpt_to, rcpt_type, msg_from, friendly_from,
  subject, ip_pool, sending_ip, routing_domain, delv_method,
  bounce_class, reason, raw_reason, error_code,
  num_retries, queue_time, msg_size,
  user_agent, ip_address, target_link_name, target_link_url,
  geo_country, geo_region, geo_city, geo_zip, geo_latitude, geo_longitude,
  relay_id, sms_src, sms_dst, rcpt_tags, rcpt_meta,
  batch_id, received_at, raw,
  timestamp_implausible, mailbox_provider, mailbox_provider_region, recipient_domain,
  sending_domain, injection_time, scheduled_time, outbound_tls, recv_method, click_tracking,
  open_tracking, initial_pixel, amp_enabled, transactional, rcpt_hash, ab_test_id,
  ab_test_version, device_token, sms_segments, sms_coding, sms_src_npi, sms_src_ton,
  sms_dst_npi, sms_dst_ton, sms_remoteids, fbtype, report_by, report_to, ab_test_name,
  ab_test_mode, ab_test_engagement_metric, ab_test_winning_template_id,
  ab_test_default_template_id, ab_test, ingest_batch_id, number_succeeded, number_failed,
  number_duplicates, error_type, retryable, expiration_timestamp, ingest_href,
  event_type, dt
FROM (
  SELECT
    e.*,
    row_number() OVER (
      PARTITION BY
        event_type, dt, type,
        coalesce(
          event_id,
          replace(replace(replace(replace(raw, ' ', ''), chr(10), ''), chr(13), ''), chr(9), '')
        )
      ORDER BY received_at, batch_id
    ) AS copy_number
  FROM events AS e
) AS numbered
WHERE copy_number = 1;
