//! The ingest handler: one HTTP request in, one response out.
//!
//! It answers 200 only once every part of the batch is durably enqueued; a malformed body is
//! answered 4xx and kept in the quarantine (with its reason) so an operator can fix and replay it;
//! a queue or store failure is answered 503 so SparkPost retries.

use std::collections::BTreeMap;
use std::io::Read as _;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use sparklake_core::envelope::{self, Batch};
use sparklake_core::message::{Attributes, OutboundMessage, attr};
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{ObjectPut, QueueSend};
use sparklake_core::timestamp;
use tracing::{error, info, warn};

use crate::config::IngestConfig;

/// SparkPost's batch id header.
pub const BATCH_ID_HEADER: &str = "x-messagesystems-batch-id";
/// Where malformed bodies are kept, under the object store's root.
pub const QUARANTINE_PREFIX: &str = "quarantine";
/// `Retry-After` of a 503: the queue or the quarantine could not be written (full or read-only
/// disk, queue over its size limit, SQS or S3 unreachable). SparkPost keeps its own schedule;
/// other senders get a hint.
pub const RETRY_AFTER_SECS: &str = "30";

/// The ingest handler over its ports.
pub struct Ingest<'a> {
    pub config: &'a IngestConfig,
    pub queue: &'a dyn QueueSend,
    pub quarantine: &'a dyn ObjectPut,
}

impl Ingest<'_> {
    /// Handles one request received at `received_at` (unix milliseconds).
    pub async fn handle(&self, request: Request<Bytes>, received_at: i64) -> Response<Bytes> {
        self.handle_measured(request, received_at).await.0
    }

    /// [`Self::handle`], with what the request counts for in the pipeline's metrics.
    pub async fn handle_measured(
        &self,
        request: Request<Bytes>,
        received_at: i64,
    ) -> (Response<Bytes>, Metrics) {
        let is_post = request.method() == Method::POST;
        let bytes = request.body().len() as u64;
        let mut events_in = BTreeMap::new();
        let response = self.respond_to(request, received_at, &mut events_in).await;
        let status = response.status();
        let metrics = Metrics {
            batches: u64::from(is_post && status.is_success()),
            bytes: if is_post { bytes } else { 0 },
            rejected: u64::from(is_post && status.is_client_error()),
            failures: u64::from(status.is_server_error()),
            events_in,
            ..Metrics::default()
        };
        (response, metrics)
    }

    async fn respond_to(
        &self,
        request: Request<Bytes>,
        received_at: i64,
        events_in: &mut BTreeMap<String, u64>,
    ) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        if let Some(answer) = self.answer_before_the_body(&parts) {
            return answer;
        }
        let batch_id = parts
            .headers
            .get(BATCH_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256);

        let body = match self.decode(&parts.headers, body) {
            Ok(body) => body,
            Err(Refusal::TooLarge) => {
                warn!(limit = self.config.max_body_bytes, "refused oversized body");
                return respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body is larger than the limit",
                );
            }
            Err(Refusal::Unsupported(encoding)) => {
                return respond(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!("Content-Encoding `{encoding}` is not supported (use gzip)"),
                );
            }
            Err(Refusal::Malformed(raw, reason)) => {
                return self
                    .quarantine(
                        &raw,
                        &reason,
                        batch_id,
                        received_at,
                        StatusCode::BAD_REQUEST,
                    )
                    .await;
            }
        };

        let (by_type, messages) = match self.prepare(&body, batch_id, received_at) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => {
                info!("ping: nothing to store");
                return respond(StatusCode::OK, r#"{"accepted":0}"#);
            }
            Err((status, reason)) => {
                return self
                    .quarantine(&body, &reason, batch_id, received_at, status)
                    .await;
            }
        };
        self.enqueue(&body, by_type, messages, events_in).await
    }

    /// The answer to a request that is not a webhook post with a valid credential (a health
    /// check, another method, a missing or wrong credential), from its head alone.
    fn answer_before_the_body(&self, parts: &http::request::Parts) -> Option<Response<Bytes>> {
        if matches!(parts.method, Method::GET | Method::HEAD) && parts.uri.path() == "/health" {
            return Some(respond(StatusCode::OK, r#"{"status":"ok"}"#));
        }
        if parts.method != Method::POST {
            let mut response = respond(StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted");
            response
                .headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("POST"));
            return Some(response);
        }
        if let Err(failure) = self.config.auth.check(&parts.headers) {
            warn!(reason = %failure, "refused unauthenticated request");
            let mut response = respond(StatusCode::UNAUTHORIZED, "unauthorized");
            if let Some(challenge) = self.config.auth.challenge() {
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static(challenge));
            }
            return Some(response);
        }
        None
    }

    /// Sends the batch's messages: 200 once all are stored, 503 (retried by SparkPost) if not.
    async fn enqueue(
        &self,
        body: &[u8],
        by_type: BTreeMap<String, u64>,
        messages: Vec<OutboundMessage>,
        events_in: &mut BTreeMap<String, u64>,
    ) -> Response<Bytes> {
        let events: u64 = by_type.values().sum();
        let parts_count = messages.len();
        match self.queue.send(messages).await {
            Ok(()) => {
                *events_in = by_type;
                info!(
                    events,
                    messages = parts_count,
                    bytes = body.len(),
                    "batch enqueued"
                );
                respond(
                    StatusCode::OK,
                    &format!(r#"{{"accepted":{events},"messages":{parts_count}}}"#),
                )
            }
            Err(e) => {
                error!(error = %e, events, "enqueue failed; SparkPost will retry");
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not enqueue; retry later",
                )
            }
        }
    }

    /// Validates the body and packs its events into queue messages: `None` for a ping, or the
    /// status and reason to refuse it with.
    fn prepare(
        &self,
        body: &Bytes,
        batch_id: Option<&str>,
        received_at: i64,
    ) -> Result<Option<Prepared>, (StatusCode, String)> {
        let batch = envelope::validate(body).map_err(|e| {
            warn!(problem = %e.redacted(), "malformed batch");
            (StatusCode::BAD_REQUEST, e.to_string())
        })?;
        if batch.event_count() == 0 {
            return Ok(None);
        }
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for (_, head) in batch.events() {
            *by_type.entry(head.event_type.to_string()).or_default() += 1;
        }
        let messages = self
            .pack(body, &batch, batch_id, received_at)
            .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        Ok(Some((by_type, messages)))
    }

    /// Undoes `Content-Encoding`, enforcing the size limit on what comes out.
    fn decode(&self, headers: &http::HeaderMap, body: Bytes) -> Result<Bytes, Refusal> {
        let max = self.config.max_body_bytes;
        if body.len() > max {
            return Err(Refusal::TooLarge);
        }
        let encoding = headers
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        match encoding.as_deref() {
            None | Some("" | "identity") => Ok(body),
            Some("gzip" | "x-gzip") => {
                let mut out =
                    Vec::with_capacity(body.len().saturating_mul(8).min(max.saturating_add(1)));
                let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
                match MultiGzDecoder::new(&body[..])
                    .take(limit)
                    .read_to_end(&mut out)
                {
                    Ok(_) if out.len() > max => Err(Refusal::TooLarge),
                    Ok(_) => Ok(Bytes::from(out)),
                    Err(e) => Err(Refusal::Malformed(
                        body,
                        format!("body is not valid gzip: {e}"),
                    )),
                }
            }
            Some(other) => Err(Refusal::Unsupported(other.to_owned())),
        }
    }

    /// One message holding the body as received when it fits, else its events split on element
    /// boundaries (pings dropped) into as few messages as fit.
    fn pack(
        &self,
        body: &Bytes,
        batch: &Batch<'_>,
        batch_id: Option<&str>,
        received_at: i64,
    ) -> Result<Vec<OutboundMessage>, envelope::ElementTooLarge> {
        let mut attributes = Attributes::new();
        attributes.insert(attr::RECEIVED_AT.into(), received_at.to_string());
        if let Some(id) = batch_id {
            attributes.insert(attr::BATCH_ID.into(), id.to_owned());
        }
        let max = self.queue.max_message_bytes();
        if body.len() <= max {
            return Ok(vec![OutboundMessage {
                body: body.clone(),
                attributes,
            }]);
        }
        // Positions in the body of the events (pings left out), so a refusal names the element
        // the sender can find.
        let (positions, events): (Vec<usize>, Vec<&str>) = batch
            .elements
            .iter()
            .enumerate()
            .filter(|(_, e)| e.head.is_some())
            .map(|(i, e)| (i, e.raw))
            .unzip();
        let parts = envelope::split(&events, max).map_err(|e| envelope::ElementTooLarge {
            index: positions.get(e.index).copied().unwrap_or(e.index),
            ..e
        })?;
        let total = parts.len();
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let mut attributes = attributes.clone();
                attributes.insert(attr::PART.into(), format!("{}/{total}", i + 1));
                OutboundMessage {
                    body: Bytes::from(part),
                    attributes,
                }
            })
            .collect())
    }

    /// Keeps a refused body and its reason, then answers `status`, or 503 if it could not be
    /// kept (so the sender retries and nothing is lost).
    async fn quarantine(
        &self,
        body: &[u8],
        reason: &str,
        batch_id: Option<&str>,
        received_at: i64,
        status: StatusCode,
    ) -> Response<Bytes> {
        let (body_key, reason_key) = quarantine_keys(body, received_at);
        let note = serde_json::json!({
            "reason": reason,
            "status": status.as_u16(),
            "received_at": timestamp::format_millis(received_at),
            "batch_id": batch_id,
            "bytes": body.len(),
            "body_key": body_key,
        });
        let stored = async {
            self.quarantine
                .put(
                    &body_key,
                    Bytes::copy_from_slice(body),
                    "application/octet-stream",
                )
                .await?;
            self.quarantine
                .put(
                    &reason_key,
                    Bytes::from(note.to_string()),
                    "application/json",
                )
                .await
        };
        match stored.await {
            Ok(()) => {
                // The reason itself stays out of the log: it can quote the body.
                warn!(key = %body_key, status = status.as_u16(), "quarantined refused body");
                respond(status, reason)
            }
            Err(e) => {
                error!(error = %e, "could not quarantine a refused body; asking the sender to retry");
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not store the refused body; retry later",
                )
            }
        }
    }
}

/// `quarantine/dt=<receive date>/<hash of body>.body` and its `.reason.json`.
pub fn quarantine_keys(body: &[u8], received_at: i64) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    let base = format!(
        "{QUARANTINE_PREFIX}/dt={}/{hash}",
        timestamp::date_of(received_at).format("%Y-%m-%d")
    );
    (format!("{base}.body"), format!("{base}.reason.json"))
}

/// A batch's events per type and the messages that carry it.
type Prepared = (BTreeMap<String, u64>, Vec<OutboundMessage>);

enum Refusal {
    TooLarge,
    Unsupported(String),
    Malformed(Bytes, String),
}

fn respond(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = if message.starts_with('{') {
        message.to_owned()
    } else {
        serde_json::json!({ "error": message }).to_string()
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            RETRY_AFTER,
            http::HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}
