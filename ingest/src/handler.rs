//! The ingest handler: one HTTP request in, one response out.
//!
//! It answers 200 only once every part of the batch is durably enqueued; a malformed body is
//! answered 4xx and kept in the quarantine (with its reason) so an operator can fix and replay it;
//! a queue or store failure is answered 503 so SparkPost retries.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use sparklake_core::envelope::{self, Batch, Outline};
use sparklake_core::message::{Attributes, OutboundMessage, attr};
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{ObjectPut, QueueSend};
use sparklake_core::timestamp;
use tracing::{error, info, warn};

use crate::config::IngestConfig;
use crate::oauth2;

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
        self.measured(request, received_at, true).await
    }

    /// [`Self::handle_measured`] for a request whose head [`Self::answer_from_the_head`] has
    /// already let through (a server that reads the body itself): the head is not checked again.
    pub async fn handle_measured_after_head(
        &self,
        request: Request<Bytes>,
        received_at: i64,
    ) -> (Response<Bytes>, Metrics) {
        self.measured(request, received_at, false).await
    }

    async fn measured(
        &self,
        request: Request<Bytes>,
        received_at: i64,
        check_head: bool,
    ) -> (Response<Bytes>, Metrics) {
        // A token request is not a batch.
        let is_post = request.method() == Method::POST && !self.is_token_request(request.uri());
        let bytes = request.body().len() as u64;
        let mut metrics = Metrics::default();
        let response = self
            .respond_to(request, received_at, check_head, &mut metrics)
            .await;
        let status = response.status();
        metrics.batches = u64::from(is_post && status.is_success());
        metrics.bytes = if is_post { bytes } else { 0 };
        metrics.rejected = u64::from(is_post && status.is_client_error());
        metrics.failures = u64::from(status.is_server_error());
        (response, metrics)
    }

    async fn respond_to(
        &self,
        request: Request<Bytes>,
        received_at: i64,
        check_head: bool,
        metrics: &mut Metrics,
    ) -> Response<Bytes> {
        let (parts, body) = request.into_parts();
        if check_head && let Some(answer) = self.answer_before_the_body(&parts) {
            return answer;
        }
        if self.is_token_request(&parts.uri) {
            return self.token(&parts.headers, &body);
        }
        let batch_id = parts
            .headers
            .get(BATCH_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256);

        // A refused body is kept as it was sent (compressed stays compressed).
        let received = Received {
            bytes: body.clone(),
            gzip: is_gzip(&parts.headers),
            batch_id,
            at: received_at,
        };
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
            Err(Refusal::Malformed(reason)) => {
                return self
                    .quarantine(&received, &reason, StatusCode::BAD_REQUEST, metrics)
                    .await;
            }
        };

        let (by_type, messages, outlines) = match self.prepare(&body, batch_id, received_at) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => {
                info!("ping: nothing to store");
                return respond(StatusCode::OK, r#"{"accepted":0}"#);
            }
            Err((status, reason)) => {
                return self.quarantine(&received, &reason, status, metrics).await;
            }
        };
        self.enqueue(&body, by_type, messages, outlines, &mut metrics.events_in)
            .await
    }

    /// What a server reading the body itself asks first: the answer to a request that its head
    /// alone decides (a health check, another method, a missing or wrong credential), with what
    /// it counts for; `None` when its body is to be read and the request handled.
    pub fn answer_from_the_head(
        &self,
        parts: &http::request::Parts,
    ) -> Option<(Response<Bytes>, Metrics)> {
        let response = self.answer_before_the_body(parts)?;
        let is_post = parts.method == Method::POST && !self.is_token_request(&parts.uri);
        let metrics = Metrics {
            rejected: u64::from(is_post && response.status().is_client_error()),
            ..Metrics::default()
        };
        Some((response, metrics))
    }

    /// The most body bytes a request with this head may send (read no further).
    pub fn body_limit(&self, parts: &http::request::Parts) -> usize {
        if self.is_token_request(&parts.uri) {
            oauth2::TOKEN_REQUEST_MAX_BYTES
        } else {
            self.config.max_body_bytes
        }
    }

    /// Whether this is a request for the OAuth2 token endpoint (OAuth2 being on).
    fn is_token_request(&self, uri: &http::Uri) -> bool {
        self.config.auth.oauth2().is_some() && uri.path() == oauth2::TOKEN_PATH
    }

    /// Answers a token request (RFC 6749 5.1 and 5.2): a token, or why not. Never logs a
    /// credential.
    fn token(&self, headers: &http::HeaderMap, body: &[u8]) -> Response<Bytes> {
        let Some(issuer) = self.config.auth.oauth2() else {
            return respond(StatusCode::NOT_FOUND, "not found");
        };
        if body.len() > oauth2::TOKEN_REQUEST_MAX_BYTES {
            return respond(StatusCode::PAYLOAD_TOO_LARGE, "token request is too large");
        }
        let mut response = match issuer.token_for(headers, body) {
            Ok(token) => {
                info!(expires_in = token.expires_in, "issued an OAuth2 token");
                respond(
                    StatusCode::OK,
                    &serde_json::json!({
                        "access_token": token.access_token,
                        "token_type": "Bearer",
                        "expires_in": token.expires_in,
                    })
                    .to_string(),
                )
            }
            Err(e) => {
                warn!(error = e.code(), "refused an OAuth2 token request");
                let status = match e {
                    oauth2::TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::BAD_REQUEST,
                };
                respond(
                    status,
                    &serde_json::json!({ "error": e.code() }).to_string(),
                )
            }
        };
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response
    }

    /// The answer to a request that is not a webhook post with a valid credential (a health
    /// check, another method, a missing or wrong credential), from its head alone.
    fn answer_before_the_body(&self, parts: &http::request::Parts) -> Option<Response<Bytes>> {
        if matches!(parts.method, Method::GET | Method::HEAD) && parts.uri.path() == "/health" {
            return Some(respond(StatusCode::OK, r#"{"status":"ok"}"#));
        }
        // The token endpoint takes the client's credentials in its body, not a webhook
        // credential.
        if self.is_token_request(&parts.uri) && parts.method == Method::POST {
            return None;
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
        outlines: Vec<Option<Arc<Outline>>>,
        events_in: &mut BTreeMap<String, u64>,
    ) -> Response<Bytes> {
        let events: u64 = by_type.values().sum();
        let parts_count = messages.len();
        match self.queue.send_outlined(messages, outlines).await {
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
        // Each type is a partition (a folder per format and day): a batch may not make more
        // than this many.
        let max_types = self.config.max_types_per_batch;
        if by_type.len() > max_types {
            warn!(
                types = by_type.len(),
                limit = max_types,
                "batch holds too many event types"
            );
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "batch holds {} distinct event types, more than SPARKLAKE_MAX_TYPES_PER_BATCH ({max_types})",
                    by_type.len()
                ),
            ));
        }
        let messages = self
            .pack(body, &batch, batch_id, received_at)
            .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        // A queue in this process (`import`) hands the next stage what this walk found, so the
        // body is not walked again; only a message that is the whole body has this outline.
        let outlines = match messages.as_slice() {
            [one] if self.queue.keeps_outlines() && one.body.as_ptr() == body.as_ptr() => {
                vec![Some(Arc::new(batch.outline(body)))]
            }
            _ => Vec::new(),
        };
        Ok(Some((by_type, messages, outlines)))
    }

    /// Undoes `Content-Encoding`, enforcing the size limit on what comes out.
    fn decode(&self, headers: &http::HeaderMap, body: Bytes) -> Result<Bytes, Refusal> {
        let max = self.config.max_body_bytes;
        if body.len() > max {
            return Err(Refusal::TooLarge);
        }
        match content_encoding(headers).as_deref() {
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
                    Err(e) => Err(Refusal::Malformed(format!("body is not valid gzip: {e}"))),
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

    /// Keeps a refused body as it was sent and its reason, then answers `status`, or 503 if
    /// they could not be kept (so the sender retries and nothing is lost). Past the
    /// quarantine's byte budget only the reason is kept, and past the reasons' allowance
    /// nothing: the answer is the same, with a warning and the `quarantine_over_budget` metric.
    async fn quarantine(
        &self,
        received: &Received<'_>,
        reason: &str,
        status: StatusCode,
        metrics: &mut Metrics,
    ) -> Response<Bytes> {
        let body = &received.bytes;
        let (body_key, reason_key) = quarantine_keys_of(body, received.at, received.gzip);
        let budget = &self.config.quarantine;
        let note_for = |kept: bool| {
            serde_json::json!({
                "reason": reason,
                "status": status.as_u16(),
                "received_at": timestamp::format_millis(received.at),
                "batch_id": received.batch_id,
                "bytes": body.len(),
                "content_encoding": received.gzip.then_some("gzip"),
                "body_key": kept.then_some(&body_key),
                "body_not_kept": (!kept).then_some("the quarantine is over SPARKLAKE_QUARANTINE_MAX_BYTES"),
            })
            .to_string()
        };
        let with_body = note_for(true);
        let keep_body = budget.take(body.len() as u64 + with_body.len() as u64);
        let note = if keep_body {
            with_body
        } else {
            let note = note_for(false);
            metrics.quarantine_over_budget += 1;
            if !budget.take_reason(note.len() as u64) {
                warn!(
                    status = status.as_u16(),
                    budget = budget.max_bytes(),
                    "quarantine over its budget and its reasons' allowance: refused body and reason not kept"
                );
                return respond(status, reason);
            }
            warn!(
                key = %reason_key,
                status = status.as_u16(),
                budget = budget.max_bytes(),
                "quarantine over its budget: kept only the reason of a refused body"
            );
            note
        };
        let stored = async {
            if keep_body {
                self.quarantine
                    .put(&body_key, body.clone(), "application/octet-stream")
                    .await?;
            }
            self.quarantine
                .put(&reason_key, Bytes::from(note), "application/json")
                .await
        };
        match stored.await {
            Ok(()) => {
                // The reason itself stays out of the log: it can quote the body.
                if keep_body {
                    warn!(key = %body_key, status = status.as_u16(), "quarantined refused body");
                }
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
    quarantine_keys_of(body, received_at, false)
}

/// The same for a body as it was sent: a gzip body is kept compressed, as `<hash>.body.gz`
/// (`sparklake import` gunzips `.gz` files when replaying it).
pub fn quarantine_keys_of(body: &[u8], received_at: i64, gzip: bool) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    let base = format!(
        "{QUARANTINE_PREFIX}/dt={}/{hash}",
        timestamp::date_of(received_at).format("%Y-%m-%d")
    );
    let body = if gzip { "body.gz" } else { "body" };
    (format!("{base}.{body}"), format!("{base}.reason.json"))
}

/// A batch's events per type and the messages that carry it.
/// Events per type, the messages, and each message's outline for a queue that keeps them.
type Prepared = (
    BTreeMap<String, u64>,
    Vec<OutboundMessage>,
    Vec<Option<Arc<Outline>>>,
);

enum Refusal {
    TooLarge,
    Unsupported(String),
    Malformed(String),
}

/// A request body as it arrived, for the quarantine.
struct Received<'a> {
    bytes: Bytes,
    gzip: bool,
    batch_id: Option<&'a str>,
    at: i64,
}

/// The request's `Content-Encoding`, trimmed and lower-cased (`?` when it is not text).
fn content_encoding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
}

fn is_gzip(headers: &http::HeaderMap) -> bool {
    matches!(
        content_encoding(headers).as_deref(),
        Some("gzip" | "x-gzip")
    )
}

/// A JSON answer: `message` as it is when it is a JSON object, else `{"error": message}`; a 503
/// carries `Retry-After`.
pub fn respond(status: StatusCode, message: &str) -> Response<Bytes> {
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
