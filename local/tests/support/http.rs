//! Raw HTTP/1.1 to a running `serve`, so a test controls every byte of a request.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The bearer token the tests' servers accept (see [`crate::support::lake::serve_command`]).
pub const TOKEN: &str = "crash-test-t0ken";

/// An HTTP answer: status (0 when none could be read), headers (names lower-cased), body.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends `head` (the request line and headers, each ending in CRLF, without the blank line)
/// then `Connection: close`, the blank line and `body`; reads what comes back until EOF or a
/// reset and parses as much of it as arrived. The server may answer and close before it read
/// everything (an early 4xx), so a failed write is not the test's failure; the answer is.
pub async fn raw_request(addr: &str, head: &[u8], body: &[u8]) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let request = request_bytes(head, body);
    let write = tokio::spawn(async move {
        // No half-close after it: hyper drops a connection whose client shut its write side.
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut response = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while let Ok(n) = reader.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    drop(write.await);
    parse_what_arrived(&response)
}

/// `POST /` with extra header lines (each ending in CRLF) and a body with its length, read as
/// [`raw_request`] does.
pub async fn post_with(addr: &str, headers: &[u8], body: &[u8]) -> Answer {
    raw_request(addr, &post_head(addr, headers, body), body).await
}

/// `POST /` of `body` as JSON with the test [`TOKEN`]; see [`try_post_with`].
pub async fn try_post(addr: &str, body: &[u8]) -> Result<Answer, String> {
    let headers = format!("Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n");
    try_post_with(addr, headers.as_bytes(), body).await
}

/// `POST /`, strictly: `Err` when the connection fails or the answer is cut off (the server
/// was killed under it), when the caller cannot know whether the batch was stored. A guard of
/// 60 s against a hung server, not a measurement.
pub async fn try_post_with(addr: &str, headers: &[u8], body: &[u8]) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let request = request_bytes(&post_head(addr, headers, body), body);
        stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
        parse(&response)
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| "no answer within 60 s".to_owned())?
}

fn post_head(addr: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut head = format!("POST / HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
    head.extend_from_slice(headers);
    head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    head
}

fn request_bytes(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut request = head.to_vec();
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(body);
    request
}

/// A whole answer, or why it is not one. With `Connection: close` the body runs to the end; a
/// body shorter than its `Content-Length` was cut off.
pub fn parse(response: &[u8]) -> Result<Answer, String> {
    if !response.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!("cut-off answer ({} bytes)", response.len()));
    }
    let answer = parse_what_arrived(response);
    if answer.status == 0 {
        return Err("no status line".to_owned());
    }
    let length = answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if length.is_some_and(|length| answer.body.len() < length) {
        return Err("cut-off body".to_owned());
    }
    Ok(answer)
}

/// As much of an answer as `response` holds: status 0 without a status line, no body without
/// the blank line ending the head.
pub fn parse_what_arrived(response: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}
