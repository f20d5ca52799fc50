//! The fanout Lambda (SQS event source): builds its clients once and answers each event with
//! the messages that failed, so only those are retried.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use fanout::{Fanout, Route};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sparklake_aws::adapters::Adapters;
use sparklake_aws::lambda;
use sparklake_core::ports::ArchiveAppend;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sparklake_aws::init_lambda_logging();
    let aws = Adapters::from_environment().await?;
    let events = aws.writer_queue()?;
    let route_queues = aws.routes();
    let routes: Vec<Route<'_>> = route_queues
        .iter()
        .map(|(r, queue)| Route {
            name: r.name.clone(),
            event_types: r.event_types.clone(),
            queue,
        })
        .collect();
    let archive = aws.archive();
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
