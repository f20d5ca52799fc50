//! Real AWS APIs for tests: the emulator `scripts/test.sh` starts on 127.0.0.1 (moto's server),
//! reached with the real AWS SDK. Each test makes its own uniquely named resources.

use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::Array as _;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_firehose::types::{DeliveryStreamType, ExtendedS3DestinationConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use sparklake_aws::config::AwsSettings;

pub struct Aws {
    pub endpoint: String,
    pub sdk: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub firehose: aws_sdk_firehose::Client,
}

/// The emulator's endpoint; these tests cannot run without it, and say so rather than skip.
pub fn endpoint() -> String {
    std::env::var("SPARKLAKE_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "SPARKLAKE_TEST_AWS_ENDPOINT is not set: the AWS tests need the emulator. \
             Run scripts/test.sh, which installs and starts moto_server on 127.0.0.1."
        )
    })
}

pub async fn aws() -> Aws {
    let endpoint = endpoint();
    let sdk = sdk_config(&endpoint).await;
    Aws {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3: sparklake_aws::s3_client(&sdk, &settings_path_style()),
        firehose: aws_sdk_firehose::Client::new(&sdk),
        endpoint,
        sdk,
    }
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

pub fn settings_path_style() -> AwsSettings {
    AwsSettings {
        s3_force_path_style: true,
        ..AwsSettings::default()
    }
}

/// A name no other test (or earlier run against the same emulator) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A queue with a dead-letter queue after `max_receives` receives; returns (url, dlq url).
pub async fn queue_with_dlq(
    aws: &Aws,
    name: &str,
    max_receives: u32,
    visibility_secs: u32,
) -> (String, String) {
    let dlq = aws
        .sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let dlq_arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let policy =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
    let queue = aws
        .sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .unwrap();
    (queue.queue_url().unwrap().to_owned(), dlq_url)
}

/// Puts `body` under `key` as it is (no prefix).
pub async fn put(aws: &Aws, bucket: &str, key: &str, body: impl Into<Bytes>) {
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.into()))
        .send()
        .await
        .unwrap();
}

pub async fn bucket(aws: &Aws, name: &str) {
    aws.s3.create_bucket().bucket(name).send().await.unwrap();
}

/// A Firehose stream delivering to `bucket` under `archive/`.
pub async fn firehose_to(aws: &Aws, stream: &str, bucket: &str) {
    aws.firehose
        .create_delivery_stream()
        .delivery_stream_name(stream)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(
            ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .bucket_arn(format!("arn:aws:s3:::{bucket}"))
                .prefix("archive/")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

pub async fn keys(aws: &Aws, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}

pub async fn get(aws: &Aws, bucket: &str, key: &str) -> Bytes {
    let object = aws
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    object.body.collect().await.unwrap().into_bytes()
}

/// Event ids (or types, for events without one) of every Parquet object under `prefix`.
pub async fn parquet_event_ids(aws: &Aws, bucket: &str, prefix: &str) -> Vec<String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut ids = Vec::new();
    for key in keys(aws, bucket, prefix)
        .await
        .iter()
        .filter(|k| k.ends_with(".parquet"))
    {
        let body = get(aws, bucket, key).await;
        let reader = ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let id = batch.column_by_name("event_id").unwrap();
            let t = batch.column_by_name("type").unwrap();
            let id = id
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let t = t
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for row in 0..batch.num_rows() {
                let value = if id.is_null(row) {
                    t.value(row)
                } else {
                    id.value(row)
                };
                ids.push(format!("{}:{value}", t.value(row)));
            }
        }
    }
    ids.sort();
    ids
}
