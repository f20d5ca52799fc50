//! The AWS side of the sparklake ports.
//!
//! - [`alb`]: the ALB request and response of the ingest Lambda.
//! - [`config`]: the AWS settings from the environment.
//! - [`codec`]: how a queue message body travels on SQS (raw JSON, or zstd + base64).
//! - [`secrets`]: credentials read from Secrets Manager at start.
//! - [`sqs`]: an SQS queue: `SendMessageBatch` packed to the real limits, receive, delete,
//!   visibility, dead-letter re-drive.
//! - [`s3`]: an S3 bucket (and prefix) as the object store.
//! - [`firehose`]: a Firehose delivery stream as the raw archive.
//! - [`lambda`]: the SQS event a Lambda receives, as the handlers' messages, and its response.
//! - [`redrive`]: moving a dead-letter queue's messages back to their source.
//! - [`retry`]: the backoff used for partial failures the SDK does not retry itself.

pub mod alb;
pub mod codec;
#[cfg(feature = "sdk")]
pub mod config;
#[cfg(feature = "sdk")]
pub mod firehose;
#[cfg(feature = "sdk")]
pub mod lambda;
#[cfg(feature = "sdk")]
pub mod redrive;
#[cfg(feature = "sdk")]
pub mod retry;
#[cfg(feature = "sdk")]
pub mod s3;
#[cfg(feature = "sdk")]
pub mod secrets;
#[cfg(feature = "sdk")]
pub mod sqs;

#[cfg(feature = "sdk")]
/// Loads the AWS configuration once per process: region, credentials and endpoint from the
/// standard environment (`AWS_ENDPOINT_URL` and its per-service variants included).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

#[cfg(feature = "sdk")]
/// The S3 client the settings ask for (path-style addressing where configured).
pub fn s3_client(
    sdk: &aws_config::SdkConfig,
    settings: &config::AwsSettings,
) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(settings.s3_force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// JSON logs on stderr (CloudWatch keeps them), filtered by `SPARKLAKE_LOG` (default `info`).
/// Stdout is left to the Embedded Metric Format lines.
pub fn init_lambda_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPARKLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}

/// Unix milliseconds now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Prints a call's metrics as Embedded Metric Format lines on stdout, where CloudWatch picks them
/// up (namespace `SPARKLAKE_METRICS_NAMESPACE`, default `Sparklake`).
pub fn emit_metrics(metrics: &sparklake_core::metrics::Metrics, function: &str) {
    let namespace =
        std::env::var("SPARKLAKE_METRICS_NAMESPACE").unwrap_or_else(|_| "Sparklake".to_owned());
    for line in metrics.to_emf(&namespace, function, now_millis()) {
        println!("{line}");
    }
}
