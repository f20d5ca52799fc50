//! An S3 bucket, under a key prefix, as the object store (output files and the quarantine).

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;
use sparklake_core::ports::{ObjectPut, PortError};

/// A put-like request with the store's server-side encryption headers.
macro_rules! encrypted {
    ($request:expr, $encryption:expr) => {
        match $encryption {
            $crate::s3::Encryption::BucketDefault => $request,
            $crate::s3::Encryption::S3 => $request
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256),
            $crate::s3::Encryption::Kms(key) => $request
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key.clone()),
        }
    };
}

mod lake;
mod lease;

/// Server-side encryption to request on every put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Encryption {
    /// The bucket's default (S3 encrypts every object with SSE-S3 unless told otherwise).
    #[default]
    BucketDefault,
    /// SSE-S3 (`AES256`), for buckets whose policy demands the header.
    S3,
    /// SSE-KMS with this key (or the account's `aws/s3` key when `None`).
    Kms(Option<String>),
}

impl Encryption {
    /// From `SPARKLAKE_S3_SSE` (`AES256` or `aws:kms`) and `SPARKLAKE_S3_KMS_KEY_ID`.
    pub fn from_settings(sse: Option<&str>, kms_key: Option<&str>) -> Result<Self, String> {
        match sse.map(str::trim) {
            None | Some("") => Ok(Self::BucketDefault),
            Some(v) if v.eq_ignore_ascii_case("AES256") => Ok(Self::S3),
            Some(v) if v.eq_ignore_ascii_case("aws:kms") => {
                Ok(Self::Kms(kms_key.map(str::to_owned)))
            }
            Some(other) => Err(format!(
                "SPARKLAKE_S3_SSE `{other}`: expected AES256 or aws:kms"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    encryption: Encryption,
    max_partition_value_bytes: Option<usize>,
}

impl S3Store {
    /// `prefix` is joined to every key with a `/` (empty for none).
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        prefix: &str,
        encryption: Encryption,
    ) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            client,
            bucket: bucket.into(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            encryption,
            max_partition_value_bytes: None,
        }
    }

    /// Shortens partition values longer than this in the writer's keys
    /// ([`ObjectPut::max_partition_value_bytes`]).
    pub fn with_max_partition_value_bytes(mut self, max: Option<usize>) -> Self {
        self.max_partition_value_bytes = max;
        self
    }

    /// The full S3 key of a store key.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl ObjectPut for S3Store {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), PortError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .content_type(content_type)
            // S3 verifies the checksum and stores it: a corrupted upload is refused, not kept.
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body));
        request = encrypted!(request, &self.encryption);
        request
            .send()
            .await
            .map_err(|e| PortError::new("s3 PutObject", DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    fn max_partition_value_bytes(&self) -> Option<usize> {
        self.max_partition_value_bytes
    }
}
