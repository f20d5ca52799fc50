//! The ALB side of the ingest Lambda: `lambda_http` turns the ALB event into an HTTP request
//! (base64 bodies decoded, headers lower-cased, multi-value headers or not); this makes the event
//! safe for that conversion first, hands the request to the ingest handler's
//! `http::Request<Bytes>` and its answer back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::HOST;
use lambda_http::Body;
use lambda_http::request::LambdaRequest;

/// The ALB's limit on a Lambda response: 1 MB, headers included.
pub const MAX_RESPONSE_BYTES: usize = 1_000_000;

/// An ALB event `lambda_http` cannot turn into a request.
#[derive(Debug, thiserror::Error)]
pub enum AlbError {
    #[error("not an ALB event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the event says its body is base64 but it is not")]
    Base64,
    #[error("the event's path does not start with `/`")]
    Path,
}

/// Makes an ALB event safe for `lambda_http`'s conversion into a request, which panics on a body
/// marked base64 that is not, and on a URI it cannot build from the path, the `Host` header and
/// `X-Forwarded-Proto`. The handler needs only the path of the URI: `Host` is moved to the
/// multi-value headers, where the conversion keeps it as a header without building the URI from
/// it (the request's headers are the same either way).
pub fn sanitize(event: &mut LambdaRequest) -> Result<(), AlbError> {
    let LambdaRequest::Alb(alb) = event else {
        return Ok(());
    };
    if alb.is_base64_encoded
        && let Some(body) = &alb.body
        && STANDARD.decode(body).is_err()
    {
        return Err(AlbError::Base64);
    }
    if alb
        .path
        .as_deref()
        .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
    {
        return Err(AlbError::Path);
    }
    if let Some(host) = alb.headers.remove(HOST) {
        alb.multi_value_headers.insert(HOST, host);
    }
    Ok(())
}

/// Reads an ALB event (the JSON the Lambda runtime delivers) into the request `lambda_http` makes
/// of it, as the ingest Lambda does: [`sanitize`], then `lambda_http`'s conversion.
pub fn decode(event: &str) -> Result<lambda_http::Request, AlbError> {
    let mut event: LambdaRequest = serde_json::from_str(event)?;
    sanitize(&mut event)?;
    Ok(event.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../fixtures/alb/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn with(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut event: serde_json::Value =
            serde_json::from_str(&fixture(name)).expect("fixture JSON");
        edit(&mut event);
        event.to_string()
    }

    #[test]
    fn decodes_the_fixtures_as_lambda_http_does() {
        for name in [
            "post_plain.json",
            "post_base64.json",
            "post_multi_value.json",
        ] {
            let ours = to_handler(decode(&fixture(name)).expect("decodes"));
            let theirs = to_handler(lambda_http::request::from_str(&fixture(name)).expect("JSON"));
            assert_eq!(ours.method(), theirs.method(), "{name}");
            assert_eq!(ours.uri().path(), theirs.uri().path(), "{name}");
            assert_eq!(ours.headers(), theirs.headers(), "{name}");
            assert_eq!(ours.body(), theirs.body(), "{name}");
        }
    }

    #[test]
    fn events_lambda_http_would_panic_on_are_errors_or_made_safe() {
        // A body marked base64 that is not: an error, not a panic.
        let bad_body = with("post_base64.json", |e| e["body"] = "not base64!".into());
        assert!(matches!(decode(&bad_body), Err(AlbError::Base64)));
        // A path that cannot follow a host.
        let bad_path = with("post_plain.json", |e| e["path"] = ":99999".into());
        assert!(matches!(decode(&bad_path), Err(AlbError::Path)));
        // A Host header or X-Forwarded-Proto no URL can be built from: the request is still
        // made, with the header kept as it came.
        for (header, value) in [("host", "bad host["), ("x-forwarded-proto", "1 2")] {
            let event = with("post_plain.json", |e| e["headers"][header] = value.into());
            let request = to_handler(decode(&event).expect("decodes"));
            assert_eq!(request.uri().path(), "/");
            assert_eq!(request.headers()[header], value);
            assert!(!request.body().is_empty());
        }
        assert!(matches!(decode("[]"), Err(AlbError::Json(_))));
    }
}
