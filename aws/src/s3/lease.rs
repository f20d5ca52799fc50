//! A partition's lease on S3: an object written with S3's conditional writes
//! (`If-None-Match: *` to take it, `If-Match: <ETag>` to renew, hand over or delete it), holding
//! its owner, its expiry and the journal its holder keeps. A lease whose holder died expires after
//! its ttl; whoever takes it then gets the journal it left.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use sparklake_core::ports::{Lease, PortError};

use super::S3Store;
use super::lake::{now_millis, port, sdk, status};

impl S3Store {
    /// Takes the lease object `<name>.lease` for `ttl` ([`LakeStore::lease`]).
    pub(super) async fn take_lease(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<Box<dyn Lease>>, PortError> {
        let key = self.key(&format!("{name}.lease"));
        let owner = format!("{}-{}", std::process::id(), now_millis());
        let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let body = lease_body(&owner, now_millis().saturating_add(ttl_millis), "");
        if let Some(etag) = self.write_lease(&key, &body, None).await? {
            return Ok(Some(Box::new(S3Lease::new(self, key, owner, etag, ttl_millis, None))));
        }
        // Held, or left by a holder that died: taken over only once it has expired.
        let Some((held, etag)) = self.read_lease(&key).await? else {
            return Ok(None);
        };
        let expires = held.get("expires_millis").and_then(Value::as_i64).unwrap_or(0);
        if expires > now_millis() {
            return Ok(None);
        }
        let journal = held
            .get("journal")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let body = lease_body(&owner, now_millis().saturating_add(ttl_millis), &journal);
        match self.write_lease(&key, &body, Some(&etag)).await? {
            Some(etag) => {
                tracing::info!(lease = %name, "took over an expired lease");
                let left = (!journal.is_empty()).then(|| journal.into_bytes());
                Ok(Some(Box::new(S3Lease::new(self, key, owner, etag, ttl_millis, left))))
            }
            None => Ok(None),
        }
    }

    /// A lease object's body and ETag; `None` if there is none.
    async fn read_lease(&self, key: &str) -> Result<Option<(Value, String)>, PortError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => {
                let etag = output.e_tag().unwrap_or_default().to_owned();
                let body = output
                    .body
                    .collect()
                    .await
                    .map_err(|e| port("s3 GetObject", e))?
                    .into_bytes();
                let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                Ok(Some((value, etag)))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk("s3 GetObject", e)),
        }
    }

    /// Writes a lease body: `if_match` an ETag (renew, hand over) or `None` for
    /// `If-None-Match: *` (take a free lease). `Ok(None)` when the condition failed.
    async fn write_lease(
        &self,
        key: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Option<String>, PortError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.to_string().into_bytes()));
        request = match if_match {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        request = encrypted!(request, &self.encryption);
        match request.send().await {
            Ok(output) => Ok(Some(output.e_tag().unwrap_or_default().to_owned())),
            // 412: the condition failed; 409: a concurrent conditional write won.
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(None),
            Err(e) if if_match.is_some() && status(&e) == Some(404) => Ok(None),
            Err(e) => Err(sdk("s3 PutObject (lease)", e)),
        }
    }
}

fn lease_body(owner: &str, expires_millis: i64, journal: &str) -> Value {
    json!({"owner": owner, "expires_millis": expires_millis, "journal": journal})
}

/// A lease object this process wrote, and the ETag that proves it still holds it.
struct S3Lease {
    store: S3Store,
    key: String,
    owner: String,
    etag: String,
    ttl_millis: i64,
    left: Option<Vec<u8>>,
    journal: String,
}

impl S3Lease {
    fn new(
        store: &S3Store,
        key: String,
        owner: String,
        etag: String,
        ttl_millis: i64,
        left: Option<Vec<u8>>,
    ) -> Self {
        let journal = left
            .as_ref()
            .map(|j| String::from_utf8_lossy(j).into_owned())
            .unwrap_or_default();
        Self {
            store: store.clone(),
            key,
            owner,
            etag,
            ttl_millis,
            left,
            journal,
        }
    }

    async fn write(&mut self, expires_millis: i64) -> Result<(), PortError> {
        let body = lease_body(&self.owner, expires_millis, &self.journal);
        match self.store.write_lease(&self.key, &body, Some(&self.etag)).await? {
            Some(etag) => {
                self.etag = etag;
                Ok(())
            }
            None => Err(port(
                "s3 lease",
                "the lease was lost (it expired and another compactor took it)",
            )),
        }
    }
}

#[async_trait]
impl Lease for S3Lease {
    fn left_behind(&self) -> Option<&[u8]> {
        self.left.as_deref()
    }

    async fn record(&mut self, journal: &[u8]) -> Result<(), PortError> {
        self.journal = String::from_utf8_lossy(journal).into_owned();
        let expires = now_millis().saturating_add(self.ttl_millis);
        self.write(expires).await
    }

    async fn release(self: Box<Self>) -> Result<(), PortError> {
        match self
            .store
            .client
            .delete_object()
            .bucket(&self.store.bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Taken over meanwhile, or gone: not ours to delete.
            Err(e) if matches!(status(&e), Some(412 | 404 | 409)) => Ok(()),
            Err(e) => Err(sdk("s3 DeleteObject (lease)", e)),
        }
    }

    async fn abandon(mut self: Box<Self>) -> Result<(), PortError> {
        // Expired at once, its journal kept for whoever takes it next.
        self.write(0).await
    }
}
