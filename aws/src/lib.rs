//! The AWS side of the sparklake ports.
//!
//! - [`adapters`]: every adapter below built once from the settings (the Lambda mains, `serve`).
//! - [`alb`]: the ALB request and response of the ingest Lambda.
//! - [`config`]: the AWS settings from the environment.
//! - [`codec`]: how a queue message body travels on SQS (raw JSON, or zstd + base64).
//! - [`secrets`]: credentials read from Secrets Manager at start.
//! - [`sqs`]: an SQS queue: `SendMessageBatch` packed to the real limits, receive, delete,
//!   visibility, dead-letter re-drive.
//! - [`s3`]: an S3 bucket (and prefix) as the object store.
//! - [`firehose`]: a Firehose delivery stream as the raw archive.
//! - [`glue`]: the Glue tables' `event_type` projection, kept in step with the types written.
//! - [`lambda`]: the SQS event a Lambda receives, as the handlers' messages, and its response.
//! - [`observe`]: every failed SDK attempt logged, every retry counted.
//! - [`redrive`]: moving a dead-letter queue's messages back to their source.
//! - [`retry`]: the backoff used for partial failures the SDK does not retry itself.

pub mod alb;
pub mod codec;

/// Items that need the AWS SDK (feature `sdk`, on by default); `alb` and `codec` do not.
macro_rules! with_sdk {
    ($($item:item)*) => { $( #[cfg(feature = "sdk")] $item )* };
}

with_sdk! {
    pub mod adapters;
    pub mod config;
    pub mod firehose;
    pub mod glue;
    pub mod lambda;
    pub mod observe;
    pub mod redrive;
    pub mod retry;
    pub mod s3;
    pub mod secrets;
    pub mod sqs;
}

#[cfg(feature = "sdk")]
/// Loads the AWS configuration once per process: region, credentials and endpoint from the
/// standard environment (`AWS_ENDPOINT_URL` and its per-service variants included), with the
/// pipeline's [`retry_config`].
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry_config(|name| std::env::var(name).ok()))
        .load()
        .await
}

#[cfg(feature = "sdk")]
/// Attempts per AWS call unless `AWS_MAX_ATTEMPTS` says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
#[cfg(feature = "sdk")]
/// The first retry waits up to this (full jitter), doubling after each attempt, capped at 20 s.
pub const INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(feature = "sdk")]
/// The SDK's standard retry mode (throttling, 5xx, timeouts and dropped connections retried with
/// exponential backoff and full jitter, within a client-side retry quota), with 5 attempts
/// instead of 3 and a first backoff of up to 200 ms instead of 1 s: a worker handles its batch
/// one call after another, so a 1 s pause per injected fault (10 % of calls) slowed the writer
/// more than the faults did, while five attempts leave a call failing for good one time in
/// 100 000 at that rate. The worst wait between attempts is 0.2 + 0.4 + 0.8 + 1.6 s, well inside
/// a webhook's time budget. `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE=adaptive` (client-side rate
/// limiting) still apply, as the SDK documents them.
pub fn retry_config(lookup: impl Fn(&str) -> Option<String>) -> aws_config::retry::RetryConfig {
    let adaptive =
        lookup("AWS_RETRY_MODE").is_some_and(|m| m.trim().eq_ignore_ascii_case("adaptive"));
    let attempts = lookup("AWS_MAX_ATTEMPTS")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let config = if adaptive {
        aws_config::retry::RetryConfig::adaptive()
    } else {
        aws_config::retry::RetryConfig::standard()
    };
    config
        .with_max_attempts(attempts)
        .with_initial_backoff(INITIAL_BACKOFF)
}

#[cfg(feature = "sdk")]
/// The S3 client the settings ask for (path-style addressing where configured), its failed
/// attempts logged and retries counted ([`observe`]).
pub fn s3_client(
    sdk: &aws_config::SdkConfig,
    settings: &config::AwsSettings,
) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(settings.s3_force_path_style)
        .interceptor(observe::AttemptObserver)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(feature = "sdk")]
/// A client of `$service`'s SDK crate over `$sdk`, its failed attempts logged and retries
/// counted ([`observe`]).
macro_rules! observed_client {
    ($service:ident, $sdk:expr) => {
        $service::Client::from_conf(
            $service::config::Builder::from($sdk)
                .interceptor(observe::AttemptObserver)
                .build(),
        )
    };
}

#[cfg(feature = "sdk")]
/// The SQS client, its failed attempts logged and retries counted ([`observe`]).
pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    observed_client!(aws_sdk_sqs, sdk)
}

#[cfg(feature = "sdk")]
/// The Firehose client, its failed attempts logged and retries counted ([`observe`]).
pub fn firehose_client(sdk: &aws_config::SdkConfig) -> aws_sdk_firehose::Client {
    observed_client!(aws_sdk_firehose, sdk)
}

#[cfg(feature = "sdk")]
/// The Glue client, its failed attempts logged and retries counted ([`observe`]).
pub fn glue_client(sdk: &aws_config::SdkConfig) -> aws_sdk_glue::Client {
    observed_client!(aws_sdk_glue, sdk)
}

/// JSON logs on stderr (CloudWatch keeps them), filtered by `SPARKLAKE_LOG` (default `info`).
/// Stdout is left to the Embedded Metric Format lines.
pub fn init_lambda_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPARKLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // A line that cannot be written is dropped, not reported with a panicking `eprintln!`.
        .log_internal_errors(false)
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

/// The CloudWatch namespace's variable (the README's configuration table is tested against it).
pub const METRICS_NAMESPACE_VARIABLE: &str = "SPARKLAKE_METRICS_NAMESPACE";

/// Prints a call's metrics as Embedded Metric Format lines on stdout, where CloudWatch picks them
/// up (namespace `SPARKLAKE_METRICS_NAMESPACE`, default `Sparklake`).
pub fn emit_metrics(metrics: &sparklake_core::metrics::Metrics, function: &str) {
    let namespace =
        std::env::var(METRICS_NAMESPACE_VARIABLE).unwrap_or_else(|_| "Sparklake".to_owned());
    // The SDK's retries, counted by the clients' interceptor (none without the SDK).
    #[cfg(feature = "sdk")]
    let metrics = &{
        let mut metrics = metrics.clone();
        metrics.retries += observe::take_retries();
        metrics
    };
    for line in metrics.to_emf(&namespace, function, now_millis()) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::retry::RetryMode;

    #[test]
    fn retries_five_times_from_200_ms_unless_the_environment_says_otherwise() {
        let default = retry_config(|_| None);
        assert_eq!(default.mode(), RetryMode::Standard);
        assert_eq!(default.max_attempts(), 5);
        assert_eq!(default.initial_backoff(), INITIAL_BACKOFF);
        let set = retry_config(|name| match name {
            "AWS_MAX_ATTEMPTS" => Some("2".into()),
            "AWS_RETRY_MODE" => Some("adaptive".into()),
            _ => None,
        });
        assert_eq!((set.mode(), set.max_attempts()), (RetryMode::Adaptive, 2));
        let nonsense = retry_config(|name| (name == "AWS_MAX_ATTEMPTS").then(|| "0".into()));
        assert_eq!(nonsense.max_attempts(), 5);
    }
}
