//! What the AWS SDK does under the pipeline's calls: every failed attempt is logged (service,
//! operation, attempt, HTTP status, error) and every retry counted, so throttling, 5xx answers
//! and dropped connections the SDK absorbs are visible in the logs and in the `retries` metric,
//! not only the failures that outlast its attempts.
//!
//! The SDK's own retry policy is its standard mode (3 attempts, exponential backoff with jitter
//! from 1 s, a client-side retry quota), tuned with the standard `AWS_MAX_ATTEMPTS` and
//! `AWS_RETRY_MODE` variables; a call that still fails is retried by the queue (visibility
//! timeout, then the dead-letter queue), or answered 503 to SparkPost, which retries.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use tracing::warn;

/// Attempts after the first, across every client of the process, since the last [`take_retries`].
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// The retries counted since the last call (process-wide: one SDK configuration per process).
pub fn take_retries() -> u64 {
    RETRIES.swap(0, Ordering::Relaxed)
}

/// The interceptor every client of the pipeline carries (see [`crate::sqs_client`] and friends).
#[derive(Debug, Default, Clone, Copy)]
pub struct AttemptObserver;

fn attempt(cfg: &ConfigBag) -> u32 {
    cfg.load::<RequestAttempts>()
        .map_or(1, RequestAttempts::attempts)
}

impl Intercept for AttemptObserver {
    fn name(&self) -> &'static str {
        "sparklake::AttemptObserver"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if attempt(cfg) > 1 {
            RETRIES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            let (service, operation) = cfg
                .load::<Metadata>()
                .map_or(("?", "?"), |m| (m.service(), m.name()));
            let status = context.response().map(|r| r.status().as_u16());
            // Errors name the service's code and message, never a request's payload.
            warn!(
                service,
                operation,
                attempt = attempt(cfg),
                status,
                error = %DisplayErrorContext(error),
                "AWS call attempt failed; the SDK retries it while attempts and retry quota last"
            );
        }
        Ok(())
    }
}
