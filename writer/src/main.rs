//! The writer Lambda (SQS event source): builds its S3 client and Parquet settings once and
//! answers each event with the messages that failed, so only those are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sparklake_aws::config::AwsSettings;
use sparklake_aws::s3::S3Store;
use sparklake_aws::{lambda, load_config};
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::output::OutputSettings;
use writer::Writer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let settings = AwsSettings::from_lookup(|name| std::env::var(name).ok())?;
    let sdk = load_config().await;
    let bucket = AwsSettings::require(&settings.bucket, "SPARKLAKE_BUCKET")?;
    let store = S3Store::new(
        sparklake_aws::s3_client(&sdk, &settings),
        bucket,
        &settings.prefix,
        settings.encryption.clone(),
    )
    .with_max_partition_value_bytes(settings.partition_value_max_bytes);
    let output = OutputSettings::from_lookup(|name| std::env::var(name).ok())?;
    let parquet = ParquetEncoder::new(output.parquet_timestamp);
    let catalog = sparklake_aws::glue_projection(&sdk, &settings);
    let writer = Writer {
        store: &store,
        parquet: &parquet,
        timestamps: output.timestamps,
        catalog: catalog
            .as_ref()
            .map(|c| c as &dyn sparklake_core::ports::TypeCatalog),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let writer = &writer;
        async move {
            let (messages, _) = lambda::messages(&event.payload);
            let outcome = writer.handle(&messages, sparklake_aws::now_millis()).await;
            sparklake_aws::emit_metrics(&outcome.metrics, "writer");
            Ok::<SqsBatchResponse, Error>(lambda::batch_response(&outcome.failed))
        }
    }))
    .await
}
