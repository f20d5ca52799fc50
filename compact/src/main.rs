//! The compact Lambda (an EventBridge schedule): compacts the lake's due partitions, starting no
//! job once its deadline is near, and prints its EMF metrics. A partition that fails is left for
//! the next run (nothing is lost); the invocation then fails, for the on-failure destination and
//! the Errors alarm.

use std::time::{Duration, Instant};

use compact::{Compactor, Policy, RunOptions};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sparklake_aws::adapters::Adapters;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::output::OutputSettings;

/// No job starts later than this before the invocation's deadline: room for the longest one
/// (`SPARKLAKE_COMPACT_MAX_INPUT_BYTES` read, merged and stored).
const DEADLINE_MARGIN: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let env = |name: &str| std::env::var(name).ok();
    let aws = Adapters::from_environment().await?;
    let store = aws.store()?;
    let output = OutputSettings::from_lookup(env)?;
    let parquet = ParquetEncoder::new(output.parquet_timestamp);
    let compactor = Compactor {
        store: &store,
        parquet: &parquet,
        policy: Policy::from_lookup(env)?,
    };
    let namespace =
        env(sparklake_aws::METRICS_NAMESPACE_VARIABLE).unwrap_or_else(|| "Sparklake".into());
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let (compactor, namespace) = (&compactor, &namespace);
        async move {
            let left = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            let options = RunOptions {
                deadline: Some(Instant::now() + left.saturating_sub(DEADLINE_MARGIN)),
                ..RunOptions::default()
            };
            let now = sparklake_aws::now_millis();
            let report = compactor.run(&options, now).await?;
            let waiting = compactor
                .plan(false, sparklake_aws::now_millis())
                .await
                .map_or(0, |p| p.len());
            println!(
                "{}",
                report.to_emf(namespace, "compact", waiting as u64, now)
            );
            if report.failed > 0 {
                return Err(Error::from(format!(
                    "{} partition(s) failed; see the log",
                    report.failed
                )));
            }
            Ok::<serde_json::Value, Error>(serde_json::to_value(&report)?)
        }
    }))
    .await
}
