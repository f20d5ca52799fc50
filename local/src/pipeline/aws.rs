//! The AWS backend: SQS queues, the S3 bucket, the Firehose archive and the Glue tables'
//! projection, from [`Adapters`].

use std::sync::Arc;
use std::time::Duration;

use sparklake_aws::adapters::Adapters;
use sparklake_aws::config::SettingsError;
use sparklake_aws::sqs::SqsQueue;
use sparklake_core::ports::{ArchiveAppend, QueueSend, TypeCatalog};

use super::{EVENTS_QUEUE, INGEST_QUEUE, Pipeline};
use crate::config::Settings;

impl Pipeline {
    /// The AWS backend: SQS queues, an S3 bucket, and a Firehose stream when one is named.
    pub fn aws(
        settings: Settings,
        aws: &Adapters,
        poll_wait: Duration,
    ) -> Result<Self, SettingsError> {
        let queue = |queue: SqsQueue, name: &str| {
            queue
                .with_name(name)
                .with_visibility_timeout(settings.queue.visibility_timeout)
        };
        let routes = aws
            .routes()
            .into_iter()
            .map(|(r, q)| {
                (
                    r.name.clone(),
                    r.event_types.clone(),
                    Arc::new(queue(q, &r.name)) as Arc<dyn QueueSend>,
                )
            })
            .collect();
        let archive = aws
            .archive()
            .filter(|_| settings.archive)
            .map(|a| Arc::new(a) as Arc<dyn ArchiveAppend>);
        let store = Arc::new(aws.store()?);
        Ok(Self {
            ingest_queue: Arc::new(queue(aws.ingest_queue()?, INGEST_QUEUE)),
            events_queue: Arc::new(queue(aws.writer_queue()?, EVENTS_QUEUE)),
            routes,
            store: store.clone(),
            lake: store,
            archive,
            catalog: aws.catalog().map(|c| Arc::new(c) as Arc<dyn TypeCatalog>),
            poll_wait: poll_wait.min(Duration::from_secs(20)),
            metrics: Arc::default(),
            local: None,
            settings,
        })
    }
}
