//! Reading a request body within its bounds: its size, the server's memory budget for bodies,
//! its deadline, and the shutdown cut-off; each way it can fail has its own answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The budget's unit: permits are KiB, so that a 32-bit permit count covers any budget.
const UNIT: usize = 1024;

/// Body bytes held in memory at once, over every request.
#[derive(Clone)]
pub struct BodyBudget(Arc<Semaphore>);

/// Bytes of the budget held by one request; returned when dropped.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).min(Semaphore::MAX_PERMITS);
        Self(Arc::new(Semaphore::new(units)))
    }

    /// Bytes free now (for tests and logs).
    pub fn available_bytes(&self) -> usize {
        self.0.available_permits() * UNIT
    }

    fn reserve(&self, bytes: usize, into: &mut Reservation) -> Result<(), BodyError> {
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| BodyError::Busy)?;
        if units == 0 {
            return Ok(());
        }
        let permit = self
            .0
            .clone()
            .try_acquire_many_owned(units)
            .map_err(|_| BodyError::Busy)?;
        match &mut into.permit {
            Some(held) => held.merge(permit),
            None => into.permit = Some(permit),
        }
        Ok(())
    }
}

/// A body that arrived whole, and the budget it holds until the request is done.
pub struct Body {
    pub bytes: Bytes,
    pub reservation: Reservation,
}

/// Why a body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than the limit")]
    TooLarge,
    #[error("body did not arrive within {0:?}")]
    Slow(Duration),
    #[error("{0}")]
    Framing(String),
    #[error("too many request bodies in memory; retry later")]
    Busy,
    #[error("shutting down; retry later")]
    ShuttingDown,
}

impl BodyError {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::TooLarge => S::PAYLOAD_TOO_LARGE,
            Self::Slow(_) => S::REQUEST_TIMEOUT,
            Self::Framing(_) => S::BAD_REQUEST,
            Self::Busy | Self::ShuttingDown => S::SERVICE_UNAVAILABLE,
        }
    }
}

/// The declared `Content-Length` (hyper has checked it is one well-formed number).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads `body` whole: at most `limit` bytes, within `timeout`, holding its bytes (and, for a
/// gzip body, `limit` more for what it inflates to) in `budget`, and giving up when `cut_off`
/// turns true.
pub async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    budget: &BodyBudget,
    timeout: Duration,
    mut cut_off: watch::Receiver<bool>,
) -> Result<Body, BodyError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let declared = declared.map(|n| n as usize);
    let compressed = headers.get(CONTENT_ENCODING).is_some();
    let mut reservation = Reservation { permit: None };
    budget.reserve(
        declared.unwrap_or(0) + if compressed { limit } else { 0 },
        &mut reservation,
    )?;
    let mut bytes = BytesMut::with_capacity(declared.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    let cut = async move {
        let sender_gone = cut_off.wait_for(|cut| *cut).await.is_err();
        // A dropped sender means no cut-off will ever come.
        if sender_gone {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(cut, body);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = tokio::time::sleep_until(deadline) => return Err(BodyError::Slow(timeout)),
            () = &mut cut => return Err(BodyError::ShuttingDown),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(framing)?;
        // Trailers are read (hyper bounds them) and ignored.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            return Err(BodyError::TooLarge);
        }
        if declared.is_none() {
            budget.reserve(data.len(), &mut reservation)?;
        }
        bytes.extend_from_slice(&data);
    }
    Ok(Body {
        bytes: bytes.freeze(),
        reservation,
    })
}

/// What a body error from hyper means for the sender: the framing was wrong, or the body
/// stopped short.
fn framing(e: hyper::Error) -> BodyError {
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    let detail = cause.unwrap_or_else(|| e.to_string());
    if e.is_incomplete_message() || detail.contains("end of file") {
        BodyError::Framing(format!("body ended before it was complete ({detail})"))
    } else {
        BodyError::Framing(format!("malformed body framing ({detail})"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_held_until_dropped() {
        let budget = BodyBudget::new(10 * UNIT);
        let mut a = Reservation { permit: None };
        budget.reserve(4 * UNIT, &mut a).unwrap();
        budget.reserve(1, &mut a).unwrap(); // rounds up to one unit
        assert_eq!(budget.available_bytes(), 5 * UNIT);
        let mut b = Reservation { permit: None };
        assert_eq!(budget.reserve(6 * UNIT, &mut b), Err(BodyError::Busy));
        drop(a);
        budget.reserve(6 * UNIT, &mut b).unwrap();
        assert_eq!(budget.available_bytes(), 4 * UNIT);
    }
}
