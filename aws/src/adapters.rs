//! The AWS adapters of the ports, built once from the settings and one SDK configuration: what
//! each Lambda `main.rs` and `sparklake serve --backend aws` construct, in one place, so a queue,
//! the store or the archive is configured the same way wherever it is built.

use aws_config::SdkConfig;

use crate::config::{AwsSettings, RouteSetting, SettingsError};
use crate::firehose::FirehoseArchive;
use crate::glue::GlueProjection;
use crate::s3::S3Store;
use crate::sqs::SqsQueue;

/// The clients (each built once, its failed attempts logged and retries counted) and the settings
/// the adapters are made from.
pub struct Adapters {
    settings: AwsSettings,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    firehose: aws_sdk_firehose::Client,
    glue: aws_sdk_glue::Client,
}

impl Adapters {
    pub fn new(sdk: &SdkConfig, settings: AwsSettings) -> Self {
        Self {
            sqs: crate::sqs_client(sdk),
            s3: crate::s3_client(sdk, &settings),
            firehose: crate::firehose_client(sdk),
            glue: crate::glue_client(sdk),
            settings,
        }
    }

    /// The adapters a Lambda function builds at start: the SDK configuration and the settings,
    /// both from the process environment.
    pub async fn from_environment() -> Result<Self, SettingsError> {
        let settings = AwsSettings::from_lookup(|name| std::env::var(name).ok())?;
        Ok(Self::new(&crate::load_config().await, settings))
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The queue at `url`, with the settings' message size and compression.
    pub fn queue(&self, url: &str) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), url)
            .with_max_message_bytes(self.settings.max_message_bytes)
            .with_compression(self.settings.compress)
    }

    /// `SPARKLAKE_INGEST_QUEUE_URL`: ingest → fanout.
    pub fn ingest_queue(&self) -> Result<SqsQueue, SettingsError> {
        self.required_queue(
            &self.settings.ingest_queue_url,
            "SPARKLAKE_INGEST_QUEUE_URL",
        )
    }

    /// `SPARKLAKE_WRITER_QUEUE_URL`: fanout → writer.
    pub fn writer_queue(&self) -> Result<SqsQueue, SettingsError> {
        self.required_queue(
            &self.settings.writer_queue_url,
            "SPARKLAKE_WRITER_QUEUE_URL",
        )
    }

    fn required_queue(
        &self,
        url: &Option<String>,
        variable: &'static str,
    ) -> Result<SqsQueue, SettingsError> {
        Ok(self.queue(AwsSettings::require(url, variable)?))
    }

    /// Each route with its queue.
    pub fn routes(&self) -> Vec<(&RouteSetting, SqsQueue)> {
        self.settings
            .routes
            .iter()
            .map(|r| (r, self.queue(&r.queue_url)))
            .collect()
    }

    /// The bucket (and prefix) as the object store and quarantine.
    pub fn store(&self) -> Result<S3Store, SettingsError> {
        let bucket = AwsSettings::require(&self.settings.bucket, "SPARKLAKE_BUCKET")?;
        Ok(S3Store::new(
            self.s3.clone(),
            bucket,
            &self.settings.prefix,
            self.settings.encryption.clone(),
        )
        .with_max_partition_value_bytes(self.settings.partition_value_max_bytes))
    }

    /// The Firehose raw archive, when `SPARKLAKE_ARCHIVE_STREAM` names one.
    pub fn archive(&self) -> Option<FirehoseArchive> {
        self.settings
            .archive_stream
            .as_deref()
            .map(|stream| FirehoseArchive::new(self.firehose.clone(), stream))
    }

    /// The Glue tables' projection, when `SPARKLAKE_GLUE_DATABASE` names their database.
    pub fn catalog(&self) -> Option<GlueProjection> {
        self.settings.glue_database.as_deref().map(|database| {
            GlueProjection::new(self.glue.clone(), database, &self.settings.glue_tables)
        })
    }
}
