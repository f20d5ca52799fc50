//! The fanout Lambda (SQS event source): builds its clients once and answers each event with
//! the messages that failed, so only those are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use fanout::{Fanout, Route};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sparklake_aws::config::AwsSettings;
use sparklake_aws::firehose::FirehoseArchive;
use sparklake_aws::sqs::SqsQueue;
use sparklake_aws::{lambda, load_config};
use sparklake_core::ports::ArchiveAppend;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let settings = AwsSettings::from_lookup(|name| std::env::var(name).ok())?;
    let sdk = load_config().await;
    let sqs = sparklake_aws::sqs_client(&sdk);
    let queue = |url: &str| {
        SqsQueue::new(sqs.clone(), url)
            .with_max_message_bytes(settings.max_message_bytes)
            .with_compression(settings.compress)
    };
    let events = queue(AwsSettings::require(
        &settings.writer_queue_url,
        "SPARKLAKE_WRITER_QUEUE_URL",
    )?);
    let route_queues: Vec<SqsQueue> = settings
        .routes
        .iter()
        .map(|r| queue(&r.queue_url))
        .collect();
    let routes: Vec<Route<'_>> = settings
        .routes
        .iter()
        .zip(&route_queues)
        .map(|(r, q)| Route {
            name: r.name.clone(),
            event_types: r.event_types.clone(),
            queue: q,
        })
        .collect();
    let archive = settings
        .archive_stream
        .as_ref()
        .map(|stream| FirehoseArchive::new(sparklake_aws::firehose_client(&sdk), stream));
    let fanout = Fanout {
        events: &events,
        routes: &routes,
        archive: archive.as_ref().map(|a| a as &dyn ArchiveAppend),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let fanout = &fanout;
        async move {
            let (messages, _) = lambda::messages(&event.payload);
            let outcome = fanout.handle(&messages).await;
            sparklake_aws::emit_metrics(&outcome.metrics, "fanout");
            Ok::<SqsBatchResponse, Error>(lambda::batch_response(&outcome.failed))
        }
    }))
    .await
}
