//! The ALB side of the ingest Lambda: `lambda_http` has already turned the ALB event into an
//! HTTP request (base64 bodies decoded, headers lower-cased, multi-value headers or not); this
//! hands it to the ingest handler's `http::Request<Bytes>` and back.

use bytes::Bytes;
use lambda_http::Body;

/// The ALB's limit on a Lambda response: 1 MB, headers included.
pub const MAX_RESPONSE_BYTES: usize = 1_000_000;

/// Reads an ALB event (the JSON the Lambda runtime delivers) into the request `lambda_http` makes
/// of it, as `lambda_http::run` does before calling the handler.
pub fn decode(event: &str) -> Result<lambda_http::Request, serde_json::Error> {
    lambda_http::request::from_str(event)
}

pub fn to_handler(request: lambda_http::Request) -> http::Request<Bytes> {
    let (parts, body) = request.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        // `Body` is non-exhaustive: anything newer is read through its bytes.
        other => Bytes::copy_from_slice(other.as_ref()),
    };
    http::Request::from_parts(parts, bytes)
}

/// The handler's response as an ALB response. Ingest's bodies are short JSON; a longer one is
/// cut to stay within the ALB's limit rather than fail the invocation.
pub fn from_handler(response: http::Response<Bytes>) -> http::Response<Body> {
    response.map(|body| {
        let body = if body.len() > MAX_RESPONSE_BYTES / 2 {
            body.slice(..MAX_RESPONSE_BYTES / 2)
        } else {
            body
        };
        Body::Text(String::from_utf8_lossy(&body).into_owned())
    })
}
