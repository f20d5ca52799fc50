//! SparkPost's OAuth2 mode end to end, as SparkPost drives it: a token request to
//! `/oauth2/token`, batches with `Authorization: Bearer <token>`, a 401 once the token expires,
//! a new token, 200 again; and the tokens that must fail (wrong client secret, expired, tampered,
//! signed with another key). Against the real `sparklake serve`, and through the ALB event shape
//! for the ingest Lambda's handler.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::http::{Answer, raw_request};
use support::process::{Server, sparklake};

const CLIENT_ID: &str = "sparkpost-webhooks";
const CLIENT_SECRET: &str = "cl1ent-s3cret-value";
const KEY: &str = "a-signing-key-of-at-least-32-bytes!!";
const OTHER_KEY: &str = "another-signing-key-of-32-bytes-or-more";

fn start(data: &Path, key: &str, ttl_secs: &str) -> Server {
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "oauth2")
        .env("SPARKLAKE_OAUTH2_CLIENT_ID", CLIENT_ID)
        .env("SPARKLAKE_OAUTH2_CLIENT_SECRET", CLIENT_SECRET)
        .env("SPARKLAKE_OAUTH2_SIGNING_KEY", key)
        .env("SPARKLAKE_OAUTH2_TOKEN_TTL_SECS", ttl_secs)
        .env("SPARKLAKE_LOG", "info")
        .stderr(support::lake::log_file(&data.join("serve.log")));
    Server::start(support::process::serve(command, &data.join("data"), &[]))
}

/// What SparkPost posts to its `auth_request_details.url`.
async fn token_request(addr: &str, body: &str, content_type: &str) -> Answer {
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    raw_request(addr, head.as_bytes(), body.as_bytes()).await
}

async fn token(addr: &str) -> String {
    let body = serde_json::json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    })
    .to_string();
    let answer = token_request(addr, &body, "application/json").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let value: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(value["token_type"], "Bearer");
    assert!(value["expires_in"].as_u64().is_some_and(|n| n > 0));
    value["access_token"].as_str().unwrap().to_owned()
}

async fn post_batch(addr: &str, token: &str, n: usize) -> Answer {
    let body = support::lake::numbered_batch("oauth", n);
    support::http::post_with(
        addr,
        format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n").as_bytes(),
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn sparkpost_fetches_a_token_posts_with_it_and_fetches_another_when_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), KEY, "2");
    let addr = server.addr.clone();

    let first = token(&addr).await;
    assert_eq!(post_batch(&addr, &first, 1).await.status, 200);
    // A form-encoded request (RFC 6749's own encoding) gets a token too.
    let form = format!(
        "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
    );
    let answer = token_request(&addr, &form, "application/x-www-form-urlencoded").await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Expired: 401, which makes SparkPost ask for a new token.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let expired = post_batch(&addr, &first, 2).await;
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert!(
        expired
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let second = token(&addr).await;
    assert_ne!(second, first);
    assert_eq!(post_batch(&addr, &second, 3).await.status, 200);

    // A wrong client secret gets no token.
    let wrong = serde_json::json!({"client_id": CLIENT_ID, "client_secret": "guess"}).to_string();
    let answer = token_request(&addr, &wrong, "application/json").await;
    assert_eq!(answer.status, 401);
    assert!(answer.body.contains("invalid_client"), "{}", answer.body);
    assert!(!answer.body.contains("access_token"));

    // Tampered: the expiry pushed out under the old MAC.
    let (payload, mac) = second.rsplit_once('.').unwrap();
    let mut fields: Vec<&str> = payload.split('.').collect();
    let later = (fields[1].parse::<u64>().unwrap() + 86_400).to_string();
    fields[1] = &later;
    let tampered = format!("{}.{mac}", fields.join("."));
    assert_eq!(post_batch(&addr, &tampered, 4).await.status, 401);

    // Signed with another key (another deployment's token).
    let other_dir = tempfile::tempdir().unwrap();
    let other = start(other_dir.path(), OTHER_KEY, "60");
    let foreign = token(&other.addr).await;
    assert_eq!(post_batch(&addr, &foreign, 5).await.status, 401);
    other.terminate();

    server.terminate();
    // The batches answered 200 (1 and 3) are in the lake; none of the refused ones is.
    let ids = support::lake::written_event_ids(&dir.path().join("data"));
    let mut expected: Vec<String> = ["oauth-1-0", "oauth-3-0"].map(String::from).to_vec();
    let mut ids = ids;
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    // No token or secret in the log.
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    for secret in [CLIENT_SECRET, KEY, first.as_str(), second.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

/// The same through the ALB's event shape, as the ingest Lambda gets it.
#[tokio::test]
async fn the_ingest_lambda_serves_the_token_endpoint_through_the_alb() {
    use sparklake_aws::alb;
    use sparklake_core::memory::{MemoryQueue, MemoryStore};

    let lookup = |name: &str| {
        Some(match name {
            "SPARKLAKE_AUTH" => "bearer,oauth2".to_owned(),
            "SPARKLAKE_BEARER_TOKENS" => "static-token".to_owned(),
            "SPARKLAKE_OAUTH2_CLIENT_ID" => CLIENT_ID.to_owned(),
            "SPARKLAKE_OAUTH2_CLIENT_SECRET" => CLIENT_SECRET.to_owned(),
            "SPARKLAKE_OAUTH2_SIGNING_KEY" => KEY.to_owned(),
            _ => return None,
        })
    };
    let config = ingest::IngestConfig::from_lookup(lookup).unwrap();
    let queue = MemoryQueue::new(256 * 1024);
    let store = MemoryStore::default();
    let ingest = ingest::Ingest {
        config: &config,
        queue: &queue,
        quarantine: &store,
    };
    let template: serde_json::Value =
        serde_json::from_slice(&support::fixtures::fixture("alb/post_plain.json")).unwrap();
    let event = |path: &str, headers: serde_json::Value, body: &str| {
        let mut event = template.clone();
        event["path"] = path.into();
        event["headers"] = headers;
        event["body"] = body.into();
        lambda_http::request::from_str(&event.to_string()).unwrap()
    };
    let call = |request| {
        let ingest = &ingest;
        async move {
            let response = alb::from_handler(
                ingest
                    .handle(alb::to_handler(request), support::fixtures::received_at())
                    .await,
            );
            let status = response.status().as_u16();
            let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
            (status, body)
        }
    };
    let token_body =
        serde_json::json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string();
    let (status, body) = call(event(
        "/oauth2/token",
        serde_json::json!({"content-type": "application/json"}),
        &token_body,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let batch = support::lake::numbered_batch("alb", 2);
    for (credential, expected) in [
        (format!("Bearer {token}"), 200),
        ("Bearer static-token".to_owned(), 200),
        (format!("Bearer {token}x"), 401),
        ("Bearer guess".to_owned(), 401),
    ] {
        let (status, body) = call(event(
            "/",
            serde_json::json!({"content-type": "application/json", "authorization": credential}),
            &batch,
        ))
        .await;
        assert_eq!(status, expected, "{credential}: {body}");
    }
    // A token request is not a batch: nothing of it reached the queue.
    assert_eq!(queue.sent().len(), 2);
    let (status, _) = call(event(
        "/oauth2/token",
        serde_json::json!({"content-type": "application/json"}),
        r#"{"client_id":"sparkpost-webhooks","client_secret":"nope"}"#,
    ))
    .await;
    assert_eq!(status, 401);
}
