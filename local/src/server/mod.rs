//! The HTTP server in front of the ingest handler: webhook POSTs to `/`, `GET /health`, and
//! `POST /oauth2/token` when OAuth2 is on. HTTP/1.1 only (hyper's HTTP/1 connection: an HTTP/2
//! preface is refused, never served as h2c).
//!
//! Everything a client can make it spend is bounded ([`Limits`]): connections (past the limit,
//! new ones wait in the listen backlog), requests under way (past it: 503 + `Retry-After`, which
//! SparkPost retries), body bytes held in memory (503), and the time to send a head, a body, or
//! nothing. The head alone decides a health check, a method or a credential: a refused request
//! has none of its body read (and no `100 Continue` sent). After the shutdown signal the server
//! stops accepting, lets requests under way arrive for [`Limits::shutdown_grace`], answers the
//! bodies still arriving then 503, closes what is left, and returns once every request whose
//! body arrived has been handled (enqueued or answered 503).
//!
//! `run` takes its listener and shutdown future as arguments, so tests start the real server on
//! `127.0.0.1:0`.

pub mod body;
pub mod limits;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, TRANSFER_ENCODING};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ingest::IngestConfig;
use sparklake_core::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use body::BodyBudget;
pub use limits::Limits;

use crate::pipeline::{Pipeline, now_millis};

/// After the grace, how long the 503s to bodies still arriving get to be written.
const CUT_OFF_WRITE: Duration = Duration::from_secs(2);
/// After a failed accept (descriptors or memory exhausted), the pause before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// A failed accept is logged at most this often (with how many were not).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

type Answer = Response<Full<Bytes>>;

struct Shared {
    pipeline: Pipeline,
    config: IngestConfig,
    limits: Limits,
    requests: Arc<Semaphore>,
    bodies: BodyBudget,
    /// Turns true when the shutdown grace is over.
    cut_off: watch::Receiver<bool>,
    /// The handlers of requests whose body arrived: waited for before `run` returns.
    handlers: TaskTracker,
}

/// Serves until `shutdown` completes, then stops as the module says.
pub async fn run(
    listener: TcpListener,
    pipeline: Pipeline,
    config: IngestConfig,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (cut_off_tx, cut_off) = watch::channel(false);
    let shared = Arc::new(Shared {
        pipeline,
        config,
        requests: Arc::new(Semaphore::new(limits.max_requests)),
        bodies: BodyBudget::new(limits.max_body_memory_bytes),
        limits: limits.clone(),
        cut_off,
        handlers: TaskTracker::new(),
    });
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    let closing = CancellationToken::new();
    let closed = CancellationToken::new();
    let mut accept_log = RateLimited::new(ACCEPT_LOG_EVERY);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE, ENFILE, ENOMEM, ...: the listener is fine, the process is short
                    // of something; the connection waits in the backlog meanwhile.
                    if let Some(suppressed) = accept_log.ready() {
                        warn!(error = %e, suppressed, "could not accept a connection; retrying");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(
            stream,
            shared.clone(),
            closing.clone(),
            closed.clone(),
            permit,
        ));
    }
    drop(listener);
    info!(
        connections = tasks.len(),
        grace_secs = limits.shutdown_grace.as_secs_f64(),
        "stopped accepting; finishing requests under way"
    );
    closing.cancel();
    tasks.close();
    if tokio::time::timeout(limits.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            connections = tasks.len(),
            "shutdown grace over: bodies still arriving are answered 503, other connections closed"
        );
        let _ = cut_off_tx.send(true);
        let _ = tokio::time::timeout(CUT_OFF_WRITE, tasks.wait()).await;
        closed.cancel();
        tasks.wait().await;
    }
    // Requests whose body arrived are handled to the end, whatever became of their connection.
    shared.handlers.close();
    shared.handlers.wait().await;
    Ok(())
}

/// One connection: HTTP/1.1 with hyper, its first head within `header_timeout`, the next ones
/// within `idle_timeout` of the previous response (hyper's header timer starts when the
/// connection goes idle), until `closing` (then graceful) or `closed` (then dropped).
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    closing: CancellationToken,
    closed: CancellationToken,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let started = Arc::new(AtomicBool::new(false));
    let header_timeout = shared.limits.header_timeout;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.idle_timeout)
        .keep_alive(true);
    let service = {
        let started = started.clone();
        service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(shared, request).await) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let first_head = tokio::time::sleep(header_timeout);
    tokio::pin!(first_head);
    let mut watching_first_head = true;
    let mut graceful = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut first_head, if watching_first_head => {
                if !started.load(Ordering::Relaxed) {
                    debug!(timeout_secs = header_timeout.as_secs_f64(), "closed a connection that sent no request head in time");
                    return;
                }
                watching_first_head = false;
            }
            () = closing.cancelled(), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            () = closed.cancelled() => return,
        }
    }
}

/// One request: refused from its head, or its body read within bounds and handed to ingest.
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Answer {
    let received_at = now_millis();
    let (parts, incoming) = request.into_parts();
    let has_body = body::declared_length(&parts.headers).is_some_and(|n| n > 0)
        || parts.headers.contains_key(TRANSFER_ENCODING);
    let ingest = shared.pipeline.ingest(&shared.config);
    if let Some((response, metrics)) = ingest.answer_from_the_head(&parts) {
        shared.pipeline.record(&metrics);
        // The body was not read: the connection cannot be reused.
        return full(response, has_body);
    }
    let Ok(_request) = shared.requests.clone().try_acquire_owned() else {
        warn!(
            limit = shared.limits.max_requests,
            "too many requests under way; answered 503"
        );
        return refuse(
            &shared,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests under way; retry later",
            has_body,
        );
    };
    let limit = ingest.body_limit(&parts);
    let started = Instant::now();
    let body = match body::read(
        incoming,
        &parts.headers,
        limit,
        &shared.bodies,
        shared.limits.body_timeout,
        shared.cut_off.clone(),
    )
    .await
    {
        Ok(body) => body,
        Err(e) => {
            warn!(reason = %e, status = e.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request body refused");
            return refuse(&shared, e.status(), &e.to_string(), true);
        }
    };
    let request = Request::from_parts(parts, body.bytes.clone());
    // Handled in a task of its own: a connection closed at the end of the shutdown grace does
    // not cut an enqueue short.
    let task = shared.handlers.spawn({
        let shared = shared.clone();
        async move {
            let reservation = body.reservation;
            let answer = shared
                .pipeline
                .ingest(&shared.config)
                .handle_measured_after_head(request, received_at)
                .await;
            drop(reservation);
            answer
        }
    });
    match task.await {
        Ok((response, metrics)) => {
            shared.pipeline.record(&metrics);
            full(response, false)
        }
        Err(e) => {
            warn!(error = %e, "the request handler failed");
            refuse(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                false,
            )
        }
    }
}

/// A refusal by the server itself (limits, framing, timeouts), counted like the handler's own.
fn refuse(shared: &Shared, status: StatusCode, message: &str, close: bool) -> Answer {
    shared.pipeline.record(&Metrics {
        rejected: u64::from(status.is_client_error()),
        failures: u64::from(status.is_server_error()),
        ..Metrics::default()
    });
    full(ingest::handler::respond(status, message), close)
}

fn full(response: Response<Bytes>, close: bool) -> Answer {
    let mut response = response.map(Full::new);
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Lets one event through per period, counting the ones held back.
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(events held back since the last one)` when this one may be logged.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_counts_what_it_holds_back() {
        let mut log = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(log.ready(), Some(0));
        assert_eq!(log.ready(), None);
        assert_eq!(log.ready(), None);
        log.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(log.ready(), Some(2));
    }
}
