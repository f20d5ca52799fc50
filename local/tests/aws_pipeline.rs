//! The pipeline against real AWS APIs (the emulator on 127.0.0.1 that `scripts/test.sh` starts),
//! through the real AWS SDK: ALB events into SQS, fanout to the writer queue and Firehose, the
//! writer to S3, a poison message through the dead-letter queue and back, `serve --backend aws`
//! end to end, and unreachable services surfaced as failures.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ingest::{Ingest, IngestConfig};
use sparklake_aws::s3::{Encryption, S3Store};
use sparklake_aws::sqs::SqsQueue;
use sparklake_aws::{alb, codec};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::envelope::validate;
use sparklake_core::message::InboundMessage;
use support::aws::*;
use support::fixtures::fixture;

fn open_config() -> IngestConfig {
    IngestConfig::from_lookup(|k| (k == "SPARKLAKE_AUTH").then(|| "none".to_owned())).unwrap()
}

/// Receives until the queue answers empty; returns the messages (decoded) and their receipts.
async fn drain(queue: &SqsQueue) -> Vec<(InboundMessage, String)> {
    let mut out = Vec::new();
    for _ in 0..100 {
        let batch = queue
            .receive_batch(10, Duration::ZERO, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        out.extend(batch.into_iter().map(|r| (r.message, r.receipt)));
    }
    out
}

fn event_raws(body: &[u8]) -> Vec<String> {
    let batch = validate(body).unwrap();
    batch.events().map(|(e, _)| e.raw.to_owned()).collect()
}

/// A batch of `copies` × the 19 sample events, each with its own event_id.
fn big_batch(copies: usize) -> String {
    let sample = String::from_utf8(fixture("sparkpost/batch.json")).unwrap();
    let batch = validate(sample.as_bytes()).unwrap();
    let mut elements = Vec::new();
    for copy in 0..copies {
        for (i, (e, _)) in batch.events().enumerate() {
            let raw = e.raw.replace("92356927693813856", &format!("{copy}{i:02}"));
            elements.push(raw);
        }
    }
    format!("[{}]", elements.join(","))
}

#[tokio::test]
async fn alb_events_become_sqs_messages_whose_union_is_the_batch() {
    let aws = aws().await;
    let (url, _) = queue_with_dlq(&aws, &unique("ingest"), 3, 30).await;
    let quarantine = unique("quarantine");
    bucket(&aws, &quarantine).await;
    let queue = SqsQueue::new(aws.sqs.clone(), &url);
    let store = S3Store::new(
        aws.s3.clone(),
        &quarantine,
        "lake",
        Encryption::BucketDefault,
    );
    let config = open_config();
    let ingest = Ingest {
        config: &config,
        queue: &queue,
        quarantine: &store,
    };

    for (name, batch_id) in [
        ("alb/post_plain.json", "alb-batch-1"),
        ("alb/post_base64.json", "alb-batch-2"),
        ("alb/post_multi_value.json", "alb-batch-3"),
    ] {
        let event = String::from_utf8(fixture(name)).unwrap();
        let request = lambda_http::request::from_str(&event).unwrap();
        let response = alb::from_handler(
            ingest
                .handle(alb::to_handler(request), 1_700_000_000_000)
                .await,
        );
        assert_eq!(response.status(), 200, "{name}");
        let received = drain(&queue).await;
        assert_eq!(received.len(), 1, "{name}");
        let (message, _) = &received[0];
        assert_eq!(
            message.attribute("batch_id"),
            Some(batch_id),
            "{name}: headers read, multi-value or not"
        );
        assert_eq!(
            event_raws(&message.body).len(),
            2,
            "{name}: two events, the ping element ignored downstream"
        );
    }

    // Over 1 MiB: split across messages on element boundaries, each compressed on the wire.
    let big = big_batch(60);
    assert!(big.len() > 1_048_576, "{} bytes", big.len());
    let mut event: serde_json::Value =
        serde_json::from_slice(&fixture("alb/post_plain.json")).unwrap();
    event["body"] = serde_json::Value::String(big.clone());
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = ingest
        .handle(alb::to_handler(request), 1_700_000_000_000)
        .await;
    assert_eq!(response.status(), 200);
    let mut parts = drain(&queue).await;
    assert!(parts.len() >= 2, "split into {} messages", parts.len());
    parts.sort_by_key(|(m, _)| {
        m.attribute("part")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    });
    let union: Vec<String> = parts
        .iter()
        .flat_map(|(m, _)| event_raws(&m.body))
        .collect();
    assert_eq!(
        union,
        event_raws(big.as_bytes()),
        "every event exactly once, in order"
    );

    // On the wire the bodies are zstd + base64, far below SQS's billing unit per 100 KB of JSON.
    let raw = aws
        .sqs
        .receive_message()
        .queue_url(&url)
        .send()
        .await
        .unwrap();
    assert!(raw.messages().is_empty(), "all received above");
    let health = lambda_http::request::from_str(
        &String::from_utf8(fixture("alb/health_check.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        ingest.handle(alb::to_handler(health), 0).await.status(),
        200
    );
}

#[tokio::test]
async fn fanout_routes_a_real_receive_by_type_and_archives_to_firehose() {
    let aws = aws().await;
    let (ingest_url, _) = queue_with_dlq(&aws, &unique("in"), 3, 30).await;
    let (events_url, _) = queue_with_dlq(&aws, &unique("events"), 3, 30).await;
    let (route_url, _) = queue_with_dlq(&aws, &unique("suppression"), 3, 30).await;
    let lake = unique("lake");
    bucket(&aws, &lake).await;
    let stream = unique("archive");
    firehose_to(&aws, &stream, &lake).await;

    let ingest_queue = SqsQueue::new(aws.sqs.clone(), &ingest_url);
    let events = SqsQueue::new(aws.sqs.clone(), &events_url);
    let route = SqsQueue::new(aws.sqs.clone(), &route_url);
    let sample = fixture("sparkpost/batch.json");
    let mut attributes = sparklake_core::message::Attributes::new();
    attributes.insert("received_at".into(), "1700000000000".into());
    ingest_queue
        .send_messages(&[sparklake_core::message::OutboundMessage {
            body: Bytes::from(sample.clone()),
            attributes,
        }])
        .await
        .unwrap();
    let received = drain(&ingest_queue).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].0.body, sample,
        "compressed on the wire, the same bytes after"
    );

    let archive = sparklake_aws::firehose::FirehoseArchive::new(aws.firehose.clone(), &stream);
    let suppression: std::collections::BTreeSet<String> = [
        "bounce",
        "spam_complaint",
        "list_unsubscribe",
        "link_unsubscribe",
    ]
    .map(String::from)
    .into();
    let routes = [fanout::Route {
        name: "suppression".into(),
        event_types: suppression.clone(),
        queue: &route,
    }];
    let handler = fanout::Fanout {
        events: &events,
        routes: &routes,
        archive: Some(&archive),
    };
    let messages: Vec<InboundMessage> = received.iter().map(|(m, _)| m.clone()).collect();
    let outcome = handler.handle(&messages).await;
    assert!(outcome.failed.is_empty());
    assert_eq!(outcome.events, 19);

    let per_type = drain(&events).await;
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for (m, _) in &per_type {
        let t = m.attribute("event_type").unwrap().to_owned();
        let raws = event_raws(&m.body);
        assert!(
            raws.iter()
                .all(|r| r.contains(&format!("\"type\": \"{t}\""))),
            "one type per message"
        );
        assert_eq!(m.attribute("received_at"), Some("1700000000000"));
        *types.entry(t).or_default() += raws.len();
    }
    assert_eq!(types.len(), 19);
    assert!(types.values().all(|&n| n == 1));
    let routed: Vec<String> = drain(&route)
        .await
        .iter()
        .map(|(m, _)| m.attribute("event_type").unwrap().to_owned())
        .collect();
    let mut routed_sorted = routed.clone();
    routed_sorted.sort();
    assert_eq!(
        routed_sorted,
        suppression.iter().cloned().collect::<Vec<_>>()
    );

    // The emulator's Firehose writes each PutRecordBatch to S3 at once under the prefix.
    let archived = keys(&aws, &lake, "archive/").await;
    assert!(!archived.is_empty(), "archive objects in S3");
    let mut lines = Vec::new();
    for key in &archived {
        let body = get(&aws, &lake, key).await;
        lines.extend(
            String::from_utf8(body.to_vec())
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert_eq!(lines.len(), 19, "one NDJSON line per event");
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(value["msys"].is_object());
    }
}

#[tokio::test]
async fn writer_puts_parquet_and_csv_at_the_right_keys() {
    let aws = aws().await;
    let lake = unique("lake");
    bucket(&aws, &lake).await;
    let store = S3Store::new(aws.s3.clone(), &lake, "/events/", Encryption::S3);
    let encoder = ParquetEncoder::default();
    let writer = writer::Writer {
        store: &store,
        parquet: &encoder,
        timestamps: Default::default(),
        catalog: None,
    };
    let sample = fixture("sparkpost/batch.json");
    let message = InboundMessage {
        id: "m-1".into(),
        body: Bytes::from(sample),
        attributes: Default::default(),
        receive_count: 1,
    };
    let outcome = writer.handle(&[message], 1_700_000_000_000).await;
    assert!(outcome.failed.is_empty());
    assert_eq!(outcome.rows, 19);
    assert_eq!(outcome.metrics.rows_per_object, vec![1; 19]);
    assert_eq!(outcome.metrics.oldest_event_millis, Some(1_454_442_600_000));
    let emf = outcome
        .metrics
        .to_emf("Sparklake", "writer", 1_454_442_660_000);
    let totals: serde_json::Value = serde_json::from_str(&emf[0]).unwrap();
    assert_eq!(totals["OldestEventAgeSeconds"], 60.0);
    assert_eq!(totals["ObjectsWritten"], 19);

    let all = keys(&aws, &lake, "events/").await;
    assert_eq!(all.len(), 38, "{all:?}");
    assert!(all.iter().any(
        |k| k.starts_with("events/parquet/event_type=bounce/dt=2016-02-02/")
            && k.ends_with(".parquet")
    ));
    assert!(all.iter().any(
        |k| k.starts_with("events/csv/event_type=relay_permfail/dt=2016-02-02/")
            && k.ends_with(".csv")
    ));
    let ids = parquet_event_ids(&aws, &lake, "events/parquet/").await;
    assert_eq!(ids.len(), 19);
    assert!(ids.contains(&"bounce:92356927693813856".to_owned()));
    assert!(
        ids.contains(&"sms_status:sms_status".to_owned()),
        "the event without an id is there"
    );

    let head = aws
        .s3
        .head_object()
        .bucket(&lake)
        .key(all.iter().find(|k| k.ends_with(".csv")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/csv; charset=utf-8"));
    let csv = get(
        &aws,
        &lake,
        all.iter()
            .find(|k| k.contains("event_type=bounce") && k.ends_with(".csv"))
            .unwrap(),
    )
    .await;
    let mut reader = csv::Reader::from_reader(&csv[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header[0], "event_id");
    assert_eq!(reader.records().count(), 1);
}

#[tokio::test]
async fn a_poison_message_is_failed_dead_lettered_redriven_then_written() {
    let aws = aws().await;
    let name = unique("events");
    let (url, dlq_url) = queue_with_dlq(&aws, &name, 2, 30).await;
    let queue = SqsQueue::new(aws.sqs.clone(), &url);
    let dlq = SqsQueue::new(aws.sqs.clone(), &dlq_url);
    let lake = unique("lake"); // not created yet: every put fails, for real
    let store = S3Store::new(aws.s3.clone(), &lake, "", Encryption::BucketDefault);
    let encoder = ParquetEncoder::default();
    let writer = writer::Writer {
        store: &store,
        parquet: &encoder,
        timestamps: Default::default(),
        catalog: None,
    };
    queue
        .send_messages(&[sparklake_core::message::OutboundMessage {
            body: Bytes::from(fixture("sparkpost/batch.json")),
            attributes: Default::default(),
        }])
        .await
        .unwrap();

    // As the Lambda sees it: an SQS event in, a partial-batch response out.
    for attempt in 1..=2 {
        let received = queue
            .receive_batch(10, Duration::ZERO, Some(Duration::from_secs(30)))
            .await
            .unwrap();
        assert_eq!(received.len(), 1, "attempt {attempt}");
        let r = &received[0];
        assert_eq!(r.message.receive_count, attempt);
        let event = sqs_event(&r.message, &aws).await;
        let (messages, skipped) = sparklake_aws::lambda::messages(&event);
        assert_eq!(skipped, 0);
        let outcome = writer.handle(&messages, 0).await;
        let response = sparklake_aws::lambda::batch_response(&outcome.failed);
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(
            response.batch_item_failures[0].item_identifier,
            r.message.id
        );
        // Failed: not deleted. Hand it back now instead of waiting out the timeout.
        queue
            .change_visibility(std::slice::from_ref(&r.receipt), Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(
        queue
            .receive_batch(10, Duration::ZERO, None)
            .await
            .unwrap()
            .is_empty(),
        "moved on the next receive"
    );
    assert_eq!(dlq.depth().await.unwrap().0, 1, "in the dead-letter queue");

    bucket(&aws, &lake).await;
    let lines = std::sync::Mutex::new(Vec::new());
    let moved =
        sparklake_aws::redrive::redrive(&queue, 1000, &|line| lines.lock().unwrap().push(line))
            .await
            .unwrap();
    assert_eq!(moved, 1);
    let said = lines.into_inner().unwrap().join("\n");
    assert!(
        said.contains("moving by receive, send, delete"),
        "the emulator has no move tasks: {said}"
    );
    assert_eq!(dlq.depth().await.unwrap().0, 0);
    let received = queue.receive_batch(10, Duration::ZERO, None).await.unwrap();
    assert_eq!(received.len(), 1);
    let outcome = writer.handle(&[received[0].message.clone()], 0).await;
    assert!(outcome.failed.is_empty());
    queue
        .delete_batch(&[received[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(parquet_event_ids(&aws, &lake, "parquet/").await.len(), 19);
}

/// The SQS event the Lambda service would deliver for this message, as JSON the runtime parses.
async fn sqs_event(message: &InboundMessage, aws: &Aws) -> aws_lambda_events::event::sqs::SqsEvent {
    let encoded = codec::encode(&message.body, true).unwrap();
    let mut attributes = serde_json::Map::new();
    for (k, v) in &message.attributes {
        attributes.insert(
            k.clone(),
            serde_json::json!({"stringValue": v, "dataType": "String"}),
        );
    }
    if let Some(e) = encoded.encoding {
        attributes.insert(
            codec::CONTENT_ENCODING.into(),
            serde_json::json!({"stringValue": e, "dataType": "String"}),
        );
    }
    let _ = aws;
    serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": message.id,
        "receiptHandle": "r",
        "body": encoded.text,
        "attributes": {"ApproximateReceiveCount": message.receive_count.to_string()},
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-1"
    }]}))
    .unwrap()
}

#[tokio::test]
async fn unreachable_services_are_retried_then_surfaced_and_nothing_is_acknowledged() {
    let aws = aws().await;
    // A port nothing listens on: the SDK's retries fail, and the failure reaches the caller.
    let dead = sdk_config("http://127.0.0.1:9").await;
    let dead_sqs = aws_sdk_sqs::Client::new(&dead);
    let dead_s3 = sparklake_aws::s3_client(&dead, &settings_path_style());
    let lake = unique("lake");
    bucket(&aws, &lake).await;
    let quarantine = S3Store::new(aws.s3.clone(), &lake, "", Encryption::BucketDefault);
    let queue = SqsQueue::new(dead_sqs, "http://127.0.0.1:9/123456789012/nowhere");
    let config = open_config();
    let ingest = Ingest {
        config: &config,
        queue: &queue,
        quarantine: &quarantine,
    };
    let request = http::Request::post("/")
        .body(Bytes::from(fixture("sparkpost/batch.json")))
        .unwrap();
    let response = ingest.handle(request, 0).await;
    assert_eq!(response.status(), 503, "SparkPost will retry");

    let store = S3Store::new(dead_s3, &lake, "", Encryption::BucketDefault);
    let encoder = ParquetEncoder::default();
    let writer = writer::Writer {
        store: &store,
        parquet: &encoder,
        timestamps: Default::default(),
        catalog: None,
    };
    let message = InboundMessage {
        id: "m-9".into(),
        body: Bytes::from(fixture("sparkpost/batch.json")),
        attributes: Default::default(),
        receive_count: 1,
    };
    let outcome = writer.handle(&[message], 0).await;
    assert_eq!(
        outcome.failed,
        vec!["m-9".to_owned()],
        "reported failed, so SQS redelivers it"
    );
    assert_eq!(outcome.rows, 0);
    assert!(keys(&aws, &lake, "parquet/").await.is_empty());
}

#[tokio::test]
async fn ingest_credentials_are_read_from_secrets_manager() {
    let aws = aws().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.sdk);
    let created = secrets
        .create_secret()
        .name(unique("webhook"))
        .secret_string(r#"{"SPARKLAKE_BEARER_TOKENS":"t0ken-1,t0ken-2"}"#)
        .send()
        .await
        .unwrap();
    let pairs = sparklake_aws::secrets::read(&aws.sdk, created.arn().unwrap())
        .await
        .unwrap();
    let config = IngestConfig::from_lookup(|k| match k {
        "SPARKLAKE_AUTH" => Some("bearer".to_owned()),
        _ => pairs.get(k).cloned(),
    })
    .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        "Bearer t0ken-2".parse().unwrap(),
    );
    assert!(config.auth.check(&headers).is_ok());
    headers.insert(
        http::header::AUTHORIZATION,
        "Bearer t0ken-3".parse().unwrap(),
    );
    assert!(config.auth.check(&headers).is_err());
    assert!(
        sparklake_aws::secrets::read(
            &aws.sdk,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing"
        )
        .await
        .is_err()
    );
}

/// A Glue table like the template's: an `enum` projection of `event_type` over `values`.
async fn projected_table(glue: &aws_sdk_glue::Client, database: &str, name: &str, values: &str) {
    use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
    let parameters: std::collections::HashMap<String, String> = [
        ("projection.enabled", "true"),
        ("projection.event_type.type", "enum"),
        ("projection.event_type.values", values),
        ("projection.dt.type", "date"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    glue.create_table()
        .database_name(database)
        .table_input(
            TableInput::builder()
                .name(name)
                .table_type("EXTERNAL_TABLE")
                .set_parameters(Some(parameters))
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .columns(
                            Column::builder()
                                .name("type")
                                .r#type("string")
                                .build()
                                .unwrap(),
                        )
                        .location("s3://lake/parquet/")
                        .build(),
                )
                .partition_keys(
                    Column::builder()
                        .name("event_type")
                        .r#type("string")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn projected_values(glue: &aws_sdk_glue::Client, database: &str, name: &str) -> Vec<String> {
    let table = glue
        .get_table()
        .database_name(database)
        .name(name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        table.storage_descriptor().and_then(|d| d.location()),
        Some("s3://lake/parquet/")
    );
    table.parameters().unwrap()["projection.event_type.values"]
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Every row the lake holds is visible through the tables: a type the writer writes for the
/// first time is added to both tables' projection (the rest of each table unchanged) before its
/// message is done; a type no enum can hold (a comma) is written and counted, not retried.
#[tokio::test]
async fn the_writer_adds_new_event_types_to_both_tables_projection() {
    let aws = aws().await;
    let lake = unique("lake");
    bucket(&aws, &lake).await;
    let glue = sparklake_aws::glue_client(&aws.sdk);
    let database = unique("db").replace('-', "_");
    glue.create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&database)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for table in ["events", "events_csv"] {
        projected_table(&glue, &database, table, "bounce,delivery").await;
    }
    let catalog = sparklake_aws::glue::GlueProjection::new(
        glue.clone(),
        &database,
        &["events".to_owned(), "events_csv".to_owned()],
    );
    let store = S3Store::new(aws.s3.clone(), &lake, "", Encryption::S3);
    let encoder = ParquetEncoder::default();
    let writer = writer::Writer {
        store: &store,
        parquet: &encoder,
        timestamps: Default::default(),
        catalog: Some(&catalog),
    };
    let body = r#"[{"msys":{"message_event":{"type":"bounce","event_id":"1","timestamp":"1454442600"}}},
        {"msys":{"track_event":{"type":"amp_open","event_id":"2","timestamp":"1454442600"}}},
        {"msys":{"brand_new_event":{"type":"odd.type","event_id":"3","timestamp":"1454442600"}}},
        {"msys":{"brand_new_event":{"type":"c,d","event_id":"4","timestamp":"1454442600"}}}]"#;
    let message = |id: &str| InboundMessage {
        id: id.into(),
        body: Bytes::from(body.to_owned()),
        attributes: Default::default(),
        receive_count: 1,
    };
    let outcome = writer.handle(&[message("m-1")], 1_454_442_700_000).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    assert_eq!(outcome.rows, 4);
    assert_eq!(outcome.metrics.projection_types_added, 2);
    assert_eq!(outcome.metrics.unprojected_types, 1);
    for table in ["events", "events_csv"] {
        assert_eq!(
            projected_values(&glue, &database, table).await,
            ["bounce", "delivery", "amp_open", "odd.type"],
            "{table}"
        );
    }
    // The folder of every projected type is where Athena's location template points.
    let all = keys(&aws, &lake, "parquet/").await;
    assert!(
        all.iter()
            .any(|k| k.starts_with("parquet/event_type=odd.type/dt=2016-02-02/"))
    );
    assert!(
        all.iter()
            .any(|k| k.starts_with("parquet/event_type=c,d/dt=2016-02-02/"))
    );

    // Written again (a redelivery): nothing new to add, nothing failed.
    let again = writer.handle(&[message("m-1")], 1_454_442_700_000).await;
    assert!(again.failed.is_empty());
    assert_eq!(again.metrics.projection_types_added, 0);

    // A catalog that cannot be reached fails the messages, so they are retried, never lost.
    let unreachable =
        sparklake_aws::glue::GlueProjection::new(glue, "no_such_database", &["events".to_owned()]);
    let failing = writer::Writer {
        catalog: Some(&unreachable),
        ..writer
    };
    let outcome = failing.handle(&[message("m-2")], 1_454_442_700_000).await;
    assert_eq!(outcome.failed, vec!["m-2".to_owned()]);
}
