//! The writer Lambda (SQS event source): builds its store, catalog and Parquet settings once and
//! answers each event with the messages that failed, so only those are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sparklake_aws::adapters::Adapters;
use sparklake_aws::lambda;
use sparklake_core::encode::ParquetEncoder;
use sparklake_core::output::OutputSettings;
use sparklake_core::ports::TypeCatalog;
use writer::Writer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let aws = Adapters::from_environment().await?;
    let store = aws.store()?;
    let catalog = aws.catalog();
    let output = OutputSettings::from_lookup(|name| std::env::var(name).ok())?;
    let parquet = ParquetEncoder::new(output.parquet_timestamp);
    let writer = Writer {
        store: &store,
        parquet: &parquet,
        timestamps: output.timestamps,
        catalog: catalog.as_ref().map(|c| c as &dyn TypeCatalog),
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
