//! A Firehose delivery stream as the raw archive: every event one NDJSON record.

use async_trait::async_trait;
use aws_sdk_firehose::Client;
use aws_sdk_firehose::error::DisplayErrorContext;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use bytes::Bytes;
use sparklake_core::ports::{ArchiveAppend, PortError};
use tracing::warn;

use crate::retry::{ATTEMPTS, backoff};

/// `PutRecordBatch` limits: records and bytes per call, bytes per record.
pub const MAX_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

#[derive(Debug, Clone)]
pub struct FirehoseArchive {
    client: Client,
    stream: String,
}

impl FirehoseArchive {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    async fn put_call(&self, records: Vec<Bytes>) -> Result<(), PortError> {
        let mut pending = records;
        for attempt in 0..ATTEMPTS {
            let batch = pending
                .iter()
                .map(|r| Record::builder().data(Blob::new(r.to_vec())).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PortError::new("firehose PutRecordBatch", e))?;
            let output = self
                .client
                .put_record_batch()
                .delivery_stream_name(&self.stream)
                .set_records(Some(batch))
                .send()
                .await
                .map_err(|e| {
                    PortError::new(
                        "firehose PutRecordBatch",
                        DisplayErrorContext(e).to_string(),
                    )
                })?;
            if output.failed_put_count() == 0 {
                return Ok(());
            }
            // Responses are in request order; a failed one carries an error code.
            let failed: Vec<Bytes> = output
                .request_responses()
                .iter()
                .zip(&pending)
                .filter(|(r, _)| r.error_code().is_some())
                .map(|(_, record)| record.clone())
                .collect();
            if attempt + 1 == ATTEMPTS {
                return Err(PortError::new(
                    "firehose PutRecordBatch",
                    format!(
                        "{} records still failed after {ATTEMPTS} attempts",
                        failed.len()
                    ),
                ));
            }
            warn!(
                failed = failed.len(),
                attempt, "PutRecordBatch records failed; retrying"
            );
            pending = failed;
            tokio::time::sleep(backoff(attempt)).await;
        }
        Ok(())
    }
}

#[async_trait]
impl ArchiveAppend for FirehoseArchive {
    async fn append(&self, records: Vec<Bytes>) -> Result<(), PortError> {
        let mut call = Vec::new();
        let mut call_bytes = 0;
        for record in records {
            // One line per record; Firehose concatenates records as they are.
            let mut line = Vec::with_capacity(record.len() + 1);
            line.extend_from_slice(&record);
            line.push(b'\n');
            if line.len() > MAX_RECORD_BYTES {
                return Err(PortError::new(
                    "firehose PutRecordBatch",
                    format!(
                        "a record of {} bytes exceeds Firehose's {MAX_RECORD_BYTES}",
                        line.len()
                    ),
                ));
            }
            if call.len() == MAX_RECORDS || call_bytes + line.len() > MAX_CALL_BYTES {
                self.put_call(std::mem::take(&mut call)).await?;
                call_bytes = 0;
            }
            call_bytes += line.len();
            call.push(Bytes::from(line));
        }
        if !call.is_empty() {
            self.put_call(call).await?;
        }
        Ok(())
    }
}
