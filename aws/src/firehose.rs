//! A Firehose delivery stream as the raw archive: events as NDJSON lines, packed several to a
//! record. Firehose bills ingestion in 5 KB steps per record, so one ~1 KB event per record
//! would be billed five times its size; records of up to [`PACK_BYTES`] make the rounding
//! negligible. Firehose concatenates records as they are, so the objects it writes are the same
//! NDJSON either way.

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
/// Lines are packed into records of at most this many bytes (a longer line is a record alone).
pub const PACK_BYTES: usize = 256 * 1024;

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
        let mut packed: Vec<Vec<u8>> = Vec::new();
        for record in records {
            let line_len = record.len() + 1;
            if line_len > MAX_RECORD_BYTES {
                return Err(PortError::new(
                    "firehose PutRecordBatch",
                    format!("a record of {line_len} bytes exceeds Firehose's {MAX_RECORD_BYTES}"),
                ));
            }
            match packed.last_mut() {
                Some(last) if last.len() + line_len <= PACK_BYTES => {
                    last.extend_from_slice(&record);
                    last.push(b'\n');
                }
                _ => {
                    let mut line = Vec::with_capacity(PACK_BYTES.min(record.len().max(4096) * 4));
                    line.extend_from_slice(&record);
                    line.push(b'\n');
                    packed.push(line);
                }
            }
        }
        let mut call = Vec::new();
        let mut call_bytes = 0;
        for record in packed {
            if call.len() == MAX_RECORDS || call_bytes + record.len() > MAX_CALL_BYTES {
                self.put_call(std::mem::take(&mut call)).await?;
                call_bytes = 0;
            }
            call_bytes += record.len();
            call.push(Bytes::from(record));
        }
        if !call.is_empty() {
            self.put_call(call).await?;
        }
        Ok(())
    }
}
