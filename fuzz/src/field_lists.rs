//! The reference's own statement of the schema: which columns it checks as text, numbers, JSON,
//! flags and times, and which it leaves to other tests, with a check that these lists and the
//! schema's columns are the same set (a new column fails every fuzz input until it is listed).

use std::collections::HashSet;

use sparklake_core::schema::COLUMNS;

pub(crate) const TEXT_FIELDS: &[&str] = &[
    "event_id",
    "message_id",
    "transmission_id",
    "campaign_id",
    "template_id",
    "template_version",
    "rcpt_to",
    "raw_rcpt_to",
    "rcpt_type",
    "msg_from",
    "friendly_from",
    "subject",
    "ip_pool",
    "sending_ip",
    "routing_domain",
    "delv_method",
    "reason",
    "raw_reason",
    "user_agent",
    "ip_address",
    "target_link_name",
    "target_link_url",
    "relay_id",
    "sms_src",
    "sms_dst",
    "mailbox_provider",
    "mailbox_provider_region",
    "recipient_domain",
    "sending_domain",
    "recv_method",
    "rcpt_hash",
    "device_token",
    "sms_coding",
    "sms_src_npi",
    "sms_src_ton",
    "sms_dst_npi",
    "sms_dst_ton",
    "fbtype",
    "report_by",
    "report_to",
    "error_type",
];
/// Text fields whose column has another name: (key, column).
pub(crate) const RENAMED_TEXT_FIELDS: &[(&str, &str)] =
    &[("batch_id", "ingest_batch_id"), ("href", "ingest_href")];
pub(crate) const INT_FIELDS: &[&str] = &[
    "subaccount_id",
    "customer_id",
    "bounce_class",
    "error_code",
    "num_retries",
    "queue_time",
    "msg_size",
    "outbound_tls",
    "sms_segments",
    "number_succeeded",
    "number_failed",
    "number_duplicates",
];
pub(crate) const JSON_FIELDS: &[&str] = &["rcpt_tags", "rcpt_meta", "sms_remoteids"];
pub(crate) const FLAG_FIELDS: &[&str] = &[
    "click_tracking",
    "open_tracking",
    "initial_pixel",
    "amp_enabled",
    "transactional",
    "retryable",
];
/// Timestamp fields besides `timestamp` (judged only as "read or not": the timestamp forms have
/// their own tests; here the point is they never cost the event).
pub(crate) const TIME_FIELDS: &[&str] =
    &["injection_time", "scheduled_time", "expiration_timestamp"];
/// Fields of the A/B test object, whose scalars have columns; `ab_test_id` / `ab_test_version`
/// fall back to them.
pub(crate) const AB_TEST_FIELDS: &[(&str, &str)] = &[
    ("name", "ab_test_name"),
    ("test_mode", "ab_test_mode"),
    ("engagement_metric", "ab_test_engagement_metric"),
    ("winning_template_id", "ab_test_winning_template_id"),
];
pub(crate) const GEO_FIELDS: &[&str] = &[
    "country",
    "region",
    "city",
    "zip",
    "postal_code",
    "latitude",
    "longitude",
];

pub(crate) fn has_duplicate<'k>(
    keys: impl Iterator<Item = &'k str>,
    known: &dyn Fn(&str) -> bool,
) -> bool {
    let mut seen = HashSet::new();
    keys.filter(|k| known(k)).any(|k| !seen.insert(k))
}

/// Columns this reference does not restate, each with why.
pub(crate) const NOT_CHECKED: &[(&str, &str)] = &[
    (
        "timestamp",
        "read by core::timestamp, tested against chrono in core",
    ),
    (
        "timestamp_implausible",
        "a policy of the writer (core/tests/documented.rs)",
    ),
    (
        "geo_latitude",
        "a float: the reference cannot restate its text (see check_fields)",
    ),
    ("geo_longitude", "as geo_latitude"),
    (
        "batch_id",
        "an attribute of the message, not of the element",
    ),
    (
        "received_at",
        "an attribute of the message, not of the element",
    ),
    (
        "ab_test_default_template_id",
        "nested two levels deep: core/tests/documented.rs",
    ),
];

/// The lists above are this reference's own statement of the schema; a column they and
/// `NOT_CHECKED` leave out would go unchecked, so every input first checks they cover it.
pub(crate) fn check_lists_cover_the_schema() {
    static COVERED: std::sync::LazyLock<()> = std::sync::LazyLock::new(|| {
        let head = ["type", "event_class", "raw", "timestamp_unparsed"];
        let geo = ["geo_country", "geo_region", "geo_city", "geo_zip"];
        let ab = ["ab_test", "ab_test_id", "ab_test_version"];
        let listed: HashSet<&str> = TEXT_FIELDS
            .iter()
            .chain(INT_FIELDS)
            .chain(JSON_FIELDS)
            .chain(FLAG_FIELDS)
            .chain(TIME_FIELDS)
            .copied()
            .chain(RENAMED_TEXT_FIELDS.iter().map(|(_, column)| *column))
            .chain(AB_TEST_FIELDS.iter().map(|(_, column)| *column))
            .chain(NOT_CHECKED.iter().map(|(column, _)| *column))
            .chain(head)
            .chain(geo)
            .chain(ab)
            .collect();
        let schema: HashSet<&str> = COLUMNS.iter().map(|c| c.name).collect();
        let mut missing: Vec<&&str> = schema.difference(&listed).collect();
        let mut extra: Vec<&&str> = listed.difference(&schema).collect();
        missing.sort();
        extra.sort();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "the reference's lists and the schema differ: unchecked columns {missing:?}, \
             listed but not columns {extra:?}"
        );
    });
    std::sync::LazyLock::force(&COVERED);
}
