//! The S3 store as the compactor's lake: listing, downloads into temporary files, uploads from
//! files (multipart above [`MULTIPART_BYTES`], so memory stays bounded), batch deletes, and a
//! lease per partition (`lease.rs`).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use bytes::Bytes;
use sparklake_core::ports::{LakeStore, Lease, ObjectInfo, ObjectPut, PortError};

use super::S3Store;

/// Files larger than this are uploaded in parts of this size.
pub const MULTIPART_BYTES: usize = 16 * 1024 * 1024;
/// DeleteObjects takes at most this many keys a call.
const DELETE_BATCH: usize = 1000;

pub(super) fn port(operation: &'static str, e: impl std::fmt::Display) -> PortError {
    PortError::new(operation, e.to_string())
}

pub(super) fn sdk<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> PortError {
    PortError::new(operation, DisplayErrorContext(e).to_string())
}

/// The HTTP status of a failed call, if it got an answer.
pub(super) fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

pub(super) fn now_millis() -> i64 {
    crate::now_millis()
}

impl S3Store {
    fn store_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
    }

    async fn upload_parts(&self, key: &str, path: &Path, content_type: &str) -> Result<(), PortError> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C);
        create = encrypted!(create, &self.encryption);
        let upload = create
            .send()
            .await
            .map_err(|e| sdk("s3 CreateMultipartUpload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| port("s3 CreateMultipartUpload", "no upload id"))?
            .to_owned();
        let sent = self.send_parts(key, path, &upload_id).await;
        if sent.is_err() {
            // Parts of an upload never completed are billed until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(self.key(key))
                .upload_id(&upload_id)
                .send()
                .await;
        }
        sent
    }

    async fn send_parts(&self, key: &str, path: &Path, upload_id: &str) -> Result<(), PortError> {
        let mut file = std::fs::File::open(path).map_err(|e| port("s3 UploadPart", e))?;
        let mut parts = Vec::new();
        let mut buffer = vec![0u8; MULTIPART_BYTES];
        for number in 1.. {
            let mut filled = 0;
            while filled < buffer.len() {
                let n = file
                    .read(&mut buffer[filled..])
                    .map_err(|e| port("s3 UploadPart", e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 && number > 1 {
                break;
            }
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(self.key(key))
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .body(ByteStream::from(Bytes::copy_from_slice(&buffer[..filled])))
                .send()
                .await
                .map_err(|e| sdk("s3 UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .set_checksum_crc32_c(part.checksum_crc32_c().map(str::to_owned))
                    .build(),
            );
            if filled < buffer.len() {
                break;
            }
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.key(key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk("s3 CompleteMultipartUpload", e))?;
        Ok(())
    }
}

#[async_trait]
impl LakeStore for S3Store {
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, PortError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.key(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk("s3 ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| self.store_key(k)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified_millis: object
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    async fn open(&self, key: &str) -> Result<Option<std::fs::File>, PortError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(sdk("s3 GetObject", e)),
        };
        let dir = self.scratch_dir();
        std::fs::create_dir_all(&dir).map_err(|e| port("s3 GetObject (temporary file)", e))?;
        // Unlinked at once: gone when the last handle closes, whatever happens to this process.
        let mut file = tempfile::tempfile_in(&dir).map_err(|e| port("s3 GetObject (temporary file)", e))?;
        let mut body = output.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| port("s3 GetObject (body)", e))?
        {
            file.write_all(&chunk)
                .map_err(|e| port("s3 GetObject (temporary file)", e))?;
        }
        file.rewind()
            .map_err(|e| port("s3 GetObject (temporary file)", e))?;
        Ok(Some(file))
    }

    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), PortError> {
        let size = std::fs::metadata(path)
            .map_err(|e| port("s3 PutObject (file)", e))?
            .len();
        if size as usize <= MULTIPART_BYTES {
            let body = std::fs::read(path).map_err(|e| port("s3 PutObject (file)", e))?;
            return self.put(key, Bytes::from(body), content_type).await;
        }
        self.upload_parts(key, path, content_type).await
    }

    async fn delete(&self, keys: &[String]) -> Result<(), PortError> {
        for chunk in keys.chunks(DELETE_BATCH) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(self.key(k)).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| port("s3 DeleteObjects", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| port("s3 DeleteObjects", e))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| sdk("s3 DeleteObjects", e))?;
            if let Some(error) = output.errors().first() {
                return Err(port(
                    "s3 DeleteObjects",
                    format!(
                        "{} keys not deleted, first {:?}: {}",
                        output.errors().len(),
                        error.key().unwrap_or_default(),
                        error.message().or(error.code()).unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn scratch_dir(&self) -> PathBuf {
        std::env::temp_dir().join("sparklake-compact")
    }

    async fn lease(&self, name: &str, ttl: Duration) -> Result<Option<Box<dyn Lease>>, PortError> {
        self.take_lease(name, ttl).await
    }
}
