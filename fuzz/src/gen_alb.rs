//! A structured ALB event generator: the Lambda target-group event the ingest function gets,
//! with single- or multi-value headers and query strings, plain or base64 bodies (gzipped or
//! not), and bodies that are SparkPost batches from [`crate::gen_batch`] or arbitrary bytes.

use std::collections::BTreeMap;
use std::io::Write as _;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::gen_batch::GenBatch;

#[derive(Arbitrary, Debug)]
pub struct GenAlb {
    pub method: GenMethod,
    pub path: GenPath,
    pub host: GenHost,
    pub multi_value: bool,
    pub headers: Vec<(HeaderKey, String)>,
    pub query: Vec<(String, String)>,
    pub body: GenBody,
    pub base64: bool,
    pub gzip: bool,
}

#[derive(Arbitrary, Debug)]
pub enum GenMethod {
    Post,
    Get,
    Head,
    Put,
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum GenPath {
    Root,
    Health,
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum GenHost {
    Usual,
    None,
    Other(String),
}

#[derive(Arbitrary, Debug)]
pub enum HeaderKey {
    ContentEncoding,
    ContentType,
    BatchId,
    Authorization,
    ForwardedProto,
    Other(String),
}

impl HeaderKey {
    fn name(&self) -> &str {
        match self {
            HeaderKey::ContentEncoding => "content-encoding",
            HeaderKey::ContentType => "content-type",
            HeaderKey::BatchId => "x-messagesystems-batch-id",
            HeaderKey::Authorization => "authorization",
            HeaderKey::ForwardedProto => "x-forwarded-proto",
            HeaderKey::Other(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum GenBody {
    Absent,
    Bytes(Vec<u8>),
    Batch(GenBatch),
}

/// An event and the body bytes the handler must be given for it (after base64, before gzip).
pub struct AlbEvent {
    pub json: String,
    pub method: String,
    /// The body as the handler sees it: base64 undone, still gzipped if it was.
    pub body: Vec<u8>,
}

impl GenAlb {
    pub fn to_event(&self) -> AlbEvent {
        let method = match &self.method {
            GenMethod::Post => "POST".to_owned(),
            GenMethod::Get => "GET".to_owned(),
            GenMethod::Head => "HEAD".to_owned(),
            GenMethod::Put => "PUT".to_owned(),
            GenMethod::Other(s) => s.clone(),
        };
        let path = match &self.path {
            GenPath::Root => "/".to_owned(),
            GenPath::Health => "/health".to_owned(),
            GenPath::Other(s) => s.clone(),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        match &self.host {
            GenHost::Usual => headers.push(("host".into(), "hooks.example.com".into())),
            GenHost::None => {}
            GenHost::Other(h) => headers.push(("host".into(), h.clone())),
        }
        headers.extend(
            self.headers
                .iter()
                .map(|(k, v)| (k.name().to_owned(), v.clone())),
        );

        let mut body = match &self.body {
            GenBody::Absent => None,
            GenBody::Bytes(b) => Some(b.clone()),
            GenBody::Batch(batch) => Some(batch.to_body().into_bytes()),
        };
        if self.gzip
            && let Some(plain) = &body
        {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = encoder.write_all(plain);
            body = encoder.finish().ok();
            headers.push(("content-encoding".into(), "gzip".into()));
        }
        // A plain (not base64) body is JSON text: what is not UTF-8 arrives replaced.
        let (text, bytes) = match (&body, self.base64 || self.gzip) {
            (None, _) => (Value::Null, Vec::new()),
            (Some(b), true) => (Value::String(STANDARD.encode(b)), b.clone()),
            (Some(b), false) => {
                let s = String::from_utf8_lossy(b).into_owned();
                let bytes = s.clone().into_bytes();
                (Value::String(s), bytes)
            }
        };

        let mut event = json!({
            "requestContext": {"elb": {"targetGroupArn":
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/sparklake/0123456789abcdef"}},
            "httpMethod": method,
            "path": path,
            "body": text,
            "isBase64Encoded": self.base64 || self.gzip,
        });
        if self.multi_value {
            let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in headers {
                h.entry(k).or_default().push(v);
            }
            let mut q: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in &self.query {
                q.entry(k.clone()).or_default().push(v.clone());
            }
            event["multiValueHeaders"] = json!(h);
            event["multiValueQueryStringParameters"] = json!(q);
        } else {
            let h: BTreeMap<String, String> = headers.into_iter().collect();
            let q: BTreeMap<&String, &String> = self.query.iter().map(|(k, v)| (k, v)).collect();
            event["headers"] = json!(h);
            event["queryStringParameters"] = json!(q);
        }
        AlbEvent {
            json: event.to_string(),
            method,
            body: bytes,
        }
    }
}
