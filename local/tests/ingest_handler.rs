//! The ingest handler through its public entry point, over the real local adapters: an SQLite
//! queue in a temporary directory and a folder object store as the quarantine.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::StatusCode;
use http::header::{ALLOW, WWW_AUTHENTICATE};
use ingest::{ConfigError, IngestConfig};
use sha2::{Digest, Sha256};
use sparklake::queue::{LocalQueue, QueueConfig};
use sparklake_core::envelope;
use sparklake_core::ports::QueueCounts;

const BATCH: &str = "sparkpost/batch.json";

fn basic(credentials: &str) -> String {
    format!("Basic {}", STANDARD.encode(credentials))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

/// `(body key, reason key)` of a quarantined body received at [`received_at`].
fn quarantine_keys(body: &[u8]) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    (
        format!("quarantine/dt=2024-05-06/{hash}.body"),
        format!("quarantine/dt=2024-05-06/{hash}.reason.json"),
    )
}

/// Asserts that `body` is kept in the quarantine with a reason note saying `reason`.
fn assert_quarantined(h: &Harness, body: &[u8], reason: &str, status: u16) -> TestResult {
    let (body_key, reason_key) = quarantine_keys(body);
    let kept = std::fs::read(h.store_root().join(&body_key))
        .map_err(|e| format!("{body_key} should be in the quarantine: {e}"))?;
    assert!(kept == body, "{body_key} must hold the exact body bytes");
    let note: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.store_root().join(&reason_key))?)?;
    assert_eq!(note["reason"], reason, "{reason_key}");
    assert_eq!(note["status"], status, "{reason_key}");
    assert_eq!(note["bytes"], body.len(), "{reason_key}");
    assert_eq!(note["body_key"], body_key.as_str(), "{reason_key}");
    Ok(())
}

async fn counts(queue: &LocalQueue) -> QueueCounts {
    queue.counts().await.expect("queue counts")
}

fn nothing_queued() -> QueueCounts {
    QueueCounts::default()
}

// ---------------------------------------------------------------------------------------------
// 1. Authentication

/// Sends `cases` that must all be refused, then `accepted` ones that must each enqueue one
/// message; `challenge` is the scheme the 401's `WWW-Authenticate` must name, if any.
async fn check_auth(
    config: &IngestConfig,
    refused: &[(&str, Vec<(&str, String)>)],
    accepted: &[(&str, Vec<(&str, String)>)],
    challenge: Option<&str>,
) -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let body = fixture(BATCH);
    for (what, headers) in refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = h
            .ingest(config, &queue, post(&headers, body.clone()), received_at())
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let www = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        match challenge {
            Some(scheme) => {
                let www = www.unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
                assert!(www.starts_with(&format!("{scheme} ")), "{what}: {www}");
            }
            None => assert_eq!(www, None, "{what}"),
        }
        assert_eq!(counts(&queue).await, nothing_queued(), "{what}: enqueued");
        assert_eq!(h.store_files(), Vec::<String>::new(), "{what}: stored");
    }
    for (n, (what, headers)) in accepted.iter().enumerate() {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = h
            .ingest(config, &queue, post(&headers, body.clone()), received_at())
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(counts(&queue).await.visible, n as u64 + 1, "{what}");
    }
    Ok(())
}

fn auth(value: impl Into<String>) -> Vec<(&'static str, String)> {
    vec![("authorization", value.into())]
}

#[tokio::test]
async fn basic_auth_accepts_only_the_configured_user_and_password() -> TestResult {
    let config = config(&[
        ("SPARKLAKE_AUTH", "basic"),
        ("SPARKLAKE_BASIC_USER", "sparkpost"),
        ("SPARKLAKE_BASIC_PASSWORD", "s3cret-pw"),
    ])?;
    check_auth(
        &config,
        &[
            ("wrong password", auth(basic("sparkpost:s3cret-pX"))),
            ("wrong user", auth(basic("sparkpast:s3cret-pw"))),
            ("password as user", auth(basic("s3cret-pw:sparkpost"))),
            ("empty credentials", auth(basic(":"))),
            ("missing header", vec![]),
            ("not base64", auth("Basic !!!notbase64")),
            (
                "no ':' in the decoded credential",
                auth(basic("sparkposts3cret-pw")),
            ),
            ("scheme without credential", auth("Basic")),
            ("scheme and blanks", auth("Basic    ")),
            ("bearer when only basic", auth("Bearer x")),
            ("bearer carrying the password", auth("Bearer s3cret-pw")),
            (
                "unknown scheme",
                auth(format!("Digest {}", STANDARD.encode("sparkpost:s3cret-pw"))),
            ),
            ("no scheme", auth(STANDARD.encode("sparkpost:s3cret-pw"))),
        ],
        &[
            ("right credential", auth(basic("sparkpost:s3cret-pw"))),
            (
                "lowercase scheme",
                auth(format!("basic {}", STANDARD.encode("sparkpost:s3cret-pw"))),
            ),
        ],
        Some("Basic"),
    )
    .await
}

#[tokio::test]
async fn bearer_auth_accepts_every_configured_token_and_nothing_else() -> TestResult {
    let config = config(&[
        ("SPARKLAKE_AUTH", "bearer"),
        ("SPARKLAKE_BEARER_TOKENS", "t1,t2"),
    ])?;
    check_auth(
        &config,
        &[
            ("wrong token", auth("Bearer t3")),
            ("prefix of a token", auth("Bearer t")),
            ("token with a suffix", auth("Bearer t1x")),
            ("the whole list", auth("Bearer t1,t2")),
            ("missing header", vec![]),
            ("empty bearer", auth("Bearer")),
            ("bearer and blanks", auth("Bearer  ")),
            ("token as basic", auth(basic("t1:t1"))),
            ("no scheme", auth("t1")),
        ],
        &[
            ("first token", auth("Bearer t1")),
            ("second token", auth("Bearer t2")),
            ("lowercase scheme", auth("bearer t1")),
        ],
        Some("Bearer"),
    )
    .await
}

#[tokio::test]
async fn header_auth_needs_the_configured_header_value() -> TestResult {
    let config = config(&[
        ("SPARKLAKE_AUTH", "header"),
        ("SPARKLAKE_HEADER_NAME", "X-Webhook-Secret"),
        ("SPARKLAKE_HEADER_VALUE", "hdr-value-1"),
    ])?;
    let header = |v: &str| vec![("x-webhook-secret", v.to_owned())];
    check_auth(
        &config,
        &[
            ("wrong value", header("hdr-value-2")),
            ("empty value", header("")),
            ("value with a suffix", header("hdr-value-1 ")),
            ("missing header", vec![]),
            (
                "value in another header",
                vec![("x-other", "hdr-value-1".to_owned())],
            ),
            ("value as a bearer token", auth("Bearer hdr-value-1")),
        ],
        &[
            ("right value", header("hdr-value-1")),
            (
                "header name in another case",
                vec![("X-WEBHOOK-SECRET", "hdr-value-1".to_owned())],
            ),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn basic_and_header_together_need_both() -> TestResult {
    let config = config(&[
        ("SPARKLAKE_AUTH", "basic,header"),
        ("SPARKLAKE_BASIC_USER", "sparkpost"),
        ("SPARKLAKE_BASIC_PASSWORD", "s3cret-pw"),
        ("SPARKLAKE_HEADER_NAME", "X-Webhook-Secret"),
        ("SPARKLAKE_HEADER_VALUE", "hdr-value-1"),
    ])?;
    let good_basic = ("authorization", basic("sparkpost:s3cret-pw"));
    let good_header = ("x-webhook-secret", "hdr-value-1".to_owned());
    check_auth(
        &config,
        &[
            ("basic only", vec![good_basic.clone()]),
            ("header only", vec![good_header.clone()]),
            (
                "right header, wrong basic",
                vec![
                    ("authorization", basic("sparkpost:nope")),
                    good_header.clone(),
                ],
            ),
            (
                "right basic, wrong header",
                vec![good_basic.clone(), ("x-webhook-secret", "nope".to_owned())],
            ),
            ("neither", vec![]),
        ],
        &[("both", vec![good_basic, good_header])],
        Some("Basic"),
    )
    .await
}

#[tokio::test]
async fn basic_and_bearer_together_accept_either() -> TestResult {
    let config = config(&[
        ("SPARKLAKE_AUTH", "basic,bearer"),
        ("SPARKLAKE_BASIC_USER", "sparkpost"),
        ("SPARKLAKE_BASIC_PASSWORD", "s3cret-pw"),
        ("SPARKLAKE_BEARER_TOKENS", "t1"),
    ])?;
    check_auth(
        &config,
        &[
            ("wrong basic", auth(basic("sparkpost:t1"))),
            ("wrong bearer", auth("Bearer s3cret-pw")),
            ("missing", vec![]),
        ],
        &[
            ("basic", auth(basic("sparkpost:s3cret-pw"))),
            ("bearer", auth("Bearer t1")),
        ],
        Some("Basic"),
    )
    .await
}

#[tokio::test]
async fn none_is_open() -> TestResult {
    let config = open_config(&[]);
    assert!(config.is_open());
    check_auth(
        &config,
        &[],
        &[
            ("no credential", vec![]),
            ("any credential", auth("Bearer whatever")),
            ("garbage credential", auth("Basic !!!")),
        ],
        None,
    )
    .await
}

#[test]
fn auth_configuration_errors() {
    assert_eq!(config(&[]).unwrap_err(), ConfigError::AuthUnset);
    assert_eq!(
        config(&[
            ("SPARKLAKE_BASIC_USER", "u"),
            ("SPARKLAKE_BASIC_PASSWORD", "p")
        ])
        .unwrap_err(),
        ConfigError::AuthUnset
    );
    assert_eq!(
        config(&[
            ("SPARKLAKE_AUTH", "none,basic"),
            ("SPARKLAKE_BASIC_USER", "u"),
            ("SPARKLAKE_BASIC_PASSWORD", "p"),
        ])
        .unwrap_err(),
        ConfigError::NoneWithOthers
    );
    assert_eq!(
        config(&[("SPARKLAKE_AUTH", "basic"), ("SPARKLAKE_BASIC_USER", "u")]).unwrap_err(),
        ConfigError::Missing("SPARKLAKE_BASIC_PASSWORD", "basic")
    );
    assert_eq!(
        config(&[
            ("SPARKLAKE_AUTH", "basic"),
            ("SPARKLAKE_BASIC_USER", "u"),
            ("SPARKLAKE_BASIC_PASSWORD", ""),
        ])
        .unwrap_err(),
        ConfigError::Missing("SPARKLAKE_BASIC_PASSWORD", "basic")
    );
    assert_eq!(
        config(&[
            ("SPARKLAKE_AUTH", "basic"),
            ("SPARKLAKE_BASIC_PASSWORD", "p")
        ])
        .unwrap_err(),
        ConfigError::Missing("SPARKLAKE_BASIC_USER", "basic")
    );
    assert_eq!(
        config(&[("SPARKLAKE_AUTH", "kerberos")]).unwrap_err(),
        ConfigError::UnknownMode("kerberos".into())
    );
    assert!(matches!(
        config(&[("SPARKLAKE_AUTH", "")]),
        Err(ConfigError::UnknownMode(_))
    ));
    assert_eq!(
        config(&[
            ("SPARKLAKE_AUTH", "bearer"),
            ("SPARKLAKE_BEARER_TOKENS", " , ,")
        ])
        .unwrap_err(),
        ConfigError::Missing("SPARKLAKE_BEARER_TOKENS", "bearer")
    );
    assert_eq!(
        config(&[
            ("SPARKLAKE_AUTH", "header"),
            ("SPARKLAKE_HEADER_NAME", "X-A")
        ])
        .unwrap_err(),
        ConfigError::Missing("SPARKLAKE_HEADER_VALUE", "header")
    );
    assert!(matches!(
        config(&[
            ("SPARKLAKE_AUTH", "header"),
            ("SPARKLAKE_HEADER_NAME", "not a header name"),
            ("SPARKLAKE_HEADER_VALUE", "v"),
        ]),
        Err(ConfigError::Invalid("SPARKLAKE_HEADER_NAME", _))
    ));
    assert!(matches!(
        config(&[
            ("SPARKLAKE_AUTH", "none"),
            ("SPARKLAKE_MAX_BODY_BYTES", "ten")
        ]),
        Err(ConfigError::Invalid("SPARKLAKE_MAX_BODY_BYTES", _))
    ));
    // Modes are case-insensitive and blanks around them are ignored.
    let config = config(&[
        ("SPARKLAKE_AUTH", " Bearer "),
        ("SPARKLAKE_BEARER_TOKENS", "t"),
    ]);
    assert!(config.is_ok_and(|c| !c.is_open()));
}

#[test]
fn configuration_debug_shows_no_secret() {
    let secrets = [
        "user-omega-42",
        "pw-zeta-789",
        "tok-alpha-123",
        "tok-beta-456",
        "hdr-gamma-000",
    ];
    let config = config(&[
        ("SPARKLAKE_AUTH", "basic,bearer,header"),
        ("SPARKLAKE_BASIC_USER", secrets[0]),
        ("SPARKLAKE_BASIC_PASSWORD", secrets[1]),
        (
            "SPARKLAKE_BEARER_TOKENS",
            &format!("{},{}", secrets[2], secrets[3]),
        ),
        ("SPARKLAKE_HEADER_NAME", "X-Webhook-Secret"),
        ("SPARKLAKE_HEADER_VALUE", secrets[4]),
    ])
    .expect("a valid configuration");
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} in {debug}");
        assert!(!pretty.contains(secret), "{secret} in {pretty}");
    }
    // Something useful is still shown.
    assert!(
        debug.contains("Basic") && debug.contains("x-webhook-secret"),
        "{debug}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The ping

#[tokio::test]
async fn the_ping_is_accepted_and_stores_nothing() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    for ping in [
        &br#"[{"msys":{}}]"#[..],
        b" [ {\"msys\" : {}} , {\"msys\":{}} ]\n",
        b"[]",
    ] {
        let response = h
            .ingest(
                &config,
                &queue,
                post(&[], Bytes::from_static(ping)),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer: serde_json::Value = serde_json::from_slice(response.body())?;
        assert_eq!(answer["accepted"], 0);
    }
    assert_eq!(counts(&queue).await, nothing_queued());
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. and 4. Malformed bodies

/// Every malformed body with the element index its refusal must name (if any) and a word of
/// its reason.
fn malformed_bodies() -> Vec<(String, Vec<u8>, Option<usize>, &'static str)> {
    let mut nested = br#"[{"msys":{"message_event":{"type":"delivery"}}},"#.to_vec();
    nested.extend(std::iter::repeat_n(b'[', 100_000));
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.push(b']');
    let cases = [
        ("not_json.txt", Some(1), "invalid JSON"),
        ("not_array.json", None, "not a JSON array"),
        ("no_msys.json", Some(1), "msys"),
        ("two_classes.json", Some(0), "two event classes"),
        ("type_not_string.json", Some(1), "not a string"),
        ("invalid_utf8.bin", None, "UTF-8"),
        ("truncated.json", Some(1), "invalid JSON"),
    ];
    let mut bodies: Vec<_> = cases
        .into_iter()
        .map(|(name, index, word)| {
            (
                name.to_owned(),
                fixture(&format!("malformed/{name}")),
                index,
                word,
            )
        })
        .collect();
    bodies.push((
        "nested 100000 levels".into(),
        nested,
        Some(1),
        "nested deeper",
    ));
    bodies.push(("empty".into(), Vec::new(), None, "not a JSON array"));
    bodies.push((
        "trailing garbage".into(),
        br#"[{"msys":{}}] [1]"#.to_vec(),
        Some(0),
        "invalid JSON",
    ));
    bodies
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_400_and_quarantined_byte_for_byte() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let bodies = malformed_bodies();
    for (name, body, index, word) in &bodies {
        let response = h
            .ingest(
                &config,
                &queue,
                post(&[("x-messagesystems-batch-id", "b-42")], body.clone()),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let reason = error_text(&response);
        assert!(reason.contains(word), "{name}: {reason}");
        if let Some(index) = index {
            let named = reason.starts_with(&format!("element {index}:"))
                || reason.starts_with(&format!("after element {index}:"));
            assert!(
                named,
                "{name}: the reason must name element {index}: {reason}"
            );
        }
        assert!(
            reason.len() < 1000,
            "{name}: reason too long: {} bytes",
            reason.len()
        );
        assert_eq!(counts(&queue).await, nothing_queued(), "{name}");
        assert_quarantined(&h, body, &reason, 400)?;
        let (_, reason_key) = quarantine_keys(body);
        let note: serde_json::Value =
            serde_json::from_slice(&std::fs::read(h.store_root().join(reason_key))?)?;
        assert_eq!(note["batch_id"], "b-42", "{name}");
        assert_eq!(note["received_at"], "2024-05-06 12:00:00.000", "{name}");
    }
    // Two files per body, nothing else, no temporary file left behind.
    let files = h.store_files();
    assert_eq!(files.len(), 2 * bodies.len(), "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("quarantine/dt=2024-05-06/"))
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_body_that_cannot_be_quarantined_gets_503() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    std::fs::create_dir_all(h.store_root())?;
    std::fs::write(h.store_root().join("quarantine"), b"in the way")?;
    for (name, body, _, _) in malformed_bodies() {
        let response = h
            .ingest(&config, &queue, post(&[], body), received_at())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}: a body that is not kept must be retried by the sender"
        );
        assert_eq!(response.headers()["retry-after"], "30", "{name}");
    }
    // Invalid gzip is quarantined too, so it gets 503 as well.
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "gzip")], &b"not gzip"[..]),
            received_at(),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "bad gzip"
    );
    assert_eq!(counts(&queue).await, nothing_queued());
    assert_eq!(h.store_files(), ["quarantine"]);

    // Once the quarantine is writable again, the retry is answered 400 and kept.
    std::fs::remove_file(h.store_root().join("quarantine"))?;
    let body = fixture("malformed/two_classes.json");
    let response = h
        .ingest(&config, &queue, post(&[], body.clone()), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_quarantined(&h, &body, &error_text(&response), 400)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Methods, health, size limits and content encodings

#[tokio::test]
async fn only_post_is_accepted_and_health_answers() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = config(&[
        ("SPARKLAKE_AUTH", "bearer"),
        ("SPARKLAKE_BEARER_TOKENS", "t1"),
    ])?;
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD"] {
        let response = h
            .ingest(
                &config,
                &queue,
                request(
                    method,
                    "/",
                    &[("authorization", "Bearer t1")],
                    fixture(BATCH),
                ),
                received_at(),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(
            response.headers().get(ALLOW).map(|v| v.as_bytes()),
            Some(&b"POST"[..])
        );
    }
    for method in ["GET", "HEAD"] {
        let response = h
            .ingest(
                &config,
                &queue,
                request(method, "/health", &[], Bytes::new()),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method} /health");
    }
    assert_eq!(counts(&queue).await, nothing_queued());
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_at_the_limit_pass() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let body = fixture(BATCH);
    let limit = body.len().to_string();
    let one_less = (body.len() - 1).to_string();

    let config_exact = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", &limit)]);
    let config_under = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", &one_less)]);
    assert_eq!(config_exact.max_body_bytes, body.len());

    let response = h
        .ingest(
            &config_under,
            &queue,
            post(&[], body.clone()),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(counts(&queue).await, nothing_queued());
    assert_eq!(h.store_files(), Vec::<String>::new());

    let response = h
        .ingest(&config_exact, &queue, post(&[], body), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&queue).await.visible, 1);
    Ok(())
}

#[tokio::test]
async fn gzip_bodies_are_decompressed_before_they_are_enqueued() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let body = fixture(BATCH);
    for encoding in ["gzip", "GZIP", "x-gzip", " gzip "] {
        let response = h
            .ingest(
                &config,
                &queue,
                post(&[("content-encoding", encoding)], gzip(&body)),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{encoding}");
        let received = receive_all(&queue).await?;
        assert_eq!(received.len(), 1, "{encoding}");
        assert!(
            received[0].message.body == body,
            "{encoding}: the decompressed JSON is enqueued"
        );
        queue.delete(&[received[0].receipt.clone()]).await?;
    }
    // Two gzip members back to back are one body.
    let (first, second) = body.split_at(body.len() / 2);
    let mut members = gzip(first);
    members.extend(gzip(second));
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "gzip")], members),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let received = receive_all(&queue).await?;
    assert!(received[0].message.body == body);
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn invalid_gzip_is_refused_with_400_and_quarantined() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let compressed = gzip(&fixture(BATCH));
    let mut corrupted = compressed.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let cases: [(&str, Vec<u8>); 3] = [
        ("not gzip", fixture(BATCH)),
        (
            "truncated gzip",
            compressed[..compressed.len() / 2].to_vec(),
        ),
        ("corrupted gzip", corrupted),
    ];
    for (what, body) in cases {
        let response = h
            .ingest(
                &config,
                &queue,
                post(&[("content-encoding", "gzip")], body.clone()),
                received_at(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let reason = error_text(&response);
        assert!(
            reason.starts_with("body is not valid gzip"),
            "{what}: {reason}"
        );
        assert_quarantined(&h, &body, &reason, 400)?;
    }
    assert_eq!(counts(&queue).await, nothing_queued());
    Ok(())
}

#[tokio::test]
async fn a_gzip_bomb_gets_413_without_being_inflated() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[("SPARKLAKE_MAX_BODY_BYTES", "65536")]);
    let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
    assert!(bomb.len() < 65536, "the compressed bomb is under the limit");
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "gzip")], bomb),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // One byte over the limit after decompression is too much; exactly the limit is not.
    let mut padded = br#"[{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#.to_vec();
    padded.resize(65535, b' ');
    padded.push(b']');
    assert_eq!(padded.len(), 65536);
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "gzip")], gzip(&padded)),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "exactly at the limit");
    let mut over = padded.clone();
    over.insert(1, b' ');
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "gzip")], gzip(&over)),
            received_at(),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "one byte over"
    );
    assert_eq!(counts(&queue).await.visible, 1);
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn unsupported_content_encodings_get_415() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    for encoding in ["br", "deflate", "zstd", "gzip, br"] {
        let response = h
            .ingest(
                &config,
                &queue,
                post(&[("content-encoding", encoding)], fixture(BATCH)),
                received_at(),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{encoding}"
        );
    }
    // `identity` is no encoding at all.
    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("content-encoding", "identity")], fixture(BATCH)),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&queue).await.visible, 1);
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. and 7. Enqueueing

#[tokio::test]
async fn a_valid_batch_is_enqueued_as_received_with_its_context() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let body = fixture(BATCH);
    let response = h
        .ingest(
            &config,
            &queue,
            post(
                &[(
                    "X-MessageSystems-Batch-ID",
                    "77cc3c40-c9d6-11e5-a4e0-76a4b0b1b2d3",
                )],
                body.clone(),
            ),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(response.body())?;
    assert_eq!(answer, serde_json::json!({"accepted": 19, "messages": 1}));

    let received = receive_all(&queue).await?;
    assert_eq!(received.len(), 1);
    let message = &received[0].message;
    assert!(message.body == body, "the body is enqueued byte for byte");
    assert_eq!(message.attribute("received_at"), Some("1714996800000"));
    assert_eq!(message.received_at_millis(), Some(received_at()));
    assert_eq!(
        message.attribute("batch_id"),
        Some("77cc3c40-c9d6-11e5-a4e0-76a4b0b1b2d3")
    );
    assert_eq!(message.attribute("part"), None);
    assert_eq!(message.attributes.len(), 2, "{:?}", message.attributes);
    assert_eq!(h.store_files(), Vec::<String>::new());

    // Without the header (or with an unusable one) there is no batch_id attribute.
    let long_id = "x".repeat(257);
    for headers in [
        vec![],
        vec![("x-messagesystems-batch-id", "  ")],
        vec![("x-messagesystems-batch-id", long_id.as_str())],
    ] {
        let response = h
            .ingest(&config, &queue, post(&headers, body.clone()), received_at())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let received = receive_all(&queue).await?;
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].message.attribute("batch_id"),
            None,
            "{headers:?}"
        );
        queue.delete(&[received[0].receipt.clone()]).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_larger_than_a_message_is_split_on_element_boundaries() -> TestResult {
    let h = Harness::new()?;
    let max = 4096;
    let queue = h.queue(
        "ingest",
        QueueConfig {
            max_message_bytes: max,
            ..QueueConfig::default()
        },
    );
    let config = open_config(&[]);
    // The sample batch with pings around its events: they are dropped when it is split.
    let original = fixture(BATCH);
    let elements = envelope::validate(&original)?;
    let mut with_pings: Vec<&str> = vec![r#"{"msys":{}}"#];
    for (i, element) in elements.elements.iter().enumerate() {
        with_pings.push(element.raw);
        if i == 7 {
            with_pings.push(r#"{"msys":{}}"#);
        }
    }
    let body = envelope::join(with_pings);
    assert!(body.len() > max);

    let response = h
        .ingest(
            &config,
            &queue,
            post(&[("x-messagesystems-batch-id", "b-1")], body.clone()),
            received_at(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let received = receive_all(&queue).await?;
    let total = received.len();
    assert!(total >= 21192 / 4096, "{total} messages");
    let answer: serde_json::Value = serde_json::from_slice(response.body())?;
    assert_eq!(answer["accepted"], 19);
    assert_eq!(answer["messages"], total);

    let mut events = Vec::new();
    for (i, r) in received.iter().enumerate() {
        let m = &r.message;
        assert!(m.body.len() <= max, "part {i} is {} bytes", m.body.len());
        let part = envelope::validate(&m.body).map_err(|e| format!("part {i}: {e}"))?;
        assert!(
            part.elements.iter().all(|e| e.head.is_some()),
            "part {i} holds a ping"
        );
        assert_eq!(
            m.attribute("part"),
            Some(format!("{}/{total}", i + 1).as_str())
        );
        assert_eq!(m.attribute("received_at"), Some("1714996800000"));
        assert_eq!(m.attribute("batch_id"), Some("b-1"));
        events.extend(part.elements.iter().map(|e| e.raw.to_owned()));
    }
    let expected: Vec<&str> = elements.elements.iter().map(|e| e.raw).collect();
    assert_eq!(
        events, expected,
        "every event exactly once, in order, byte for byte"
    );
    assert_eq!(h.store_files(), Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn an_element_larger_than_a_message_gets_413_and_is_quarantined() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue(
        "ingest",
        QueueConfig {
            max_message_bytes: 4096,
            ..QueueConfig::default()
        },
    );
    let config = open_config(&[]);
    let small = r#"{"msys":{"message_event":{"type":"delivery","event_id":"1"}}}"#;
    let big = format!(
        r#"{{"msys":{{"message_event":{{"type":"delivery","event_id":"2","subject":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let body = envelope::join([r#"{"msys":{}}"#, small, big.as_str(), small]);
    let response = h
        .ingest(&config, &queue, post(&[], body.clone()), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reason = error_text(&response);
    assert!(
        reason.starts_with("element 2 is"),
        "the reason must name the big element by its index in the body (2): {reason}"
    );
    assert_eq!(
        counts(&queue).await,
        nothing_queued(),
        "no part of the batch is enqueued"
    );
    assert_quarantined(&h, body.as_bytes(), &reason, 413)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 8. Queue failure

/// The queue fails for real: another connection to the database holds its write lock for longer
/// than the queue waits for it (10 s), as a stuck process or a long backup would.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_failure_gets_503_and_the_retry_succeeds() -> TestResult {
    let h = Harness::new()?;
    let queue = h.queue("ingest", QueueConfig::default());
    let config = open_config(&[]);
    let body = fixture(BATCH);

    let blocker = rusqlite::Connection::open(h.dir.path().join("queues.sqlite3"))?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    let started = Instant::now();
    let response = h
        .ingest(&config, &queue, post(&[], body.clone()), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the queue waited for the lock"
    );
    blocker.execute_batch("ROLLBACK")?;
    drop(blocker);

    assert_eq!(
        counts(&queue).await,
        nothing_queued(),
        "nothing half-enqueued"
    );
    assert_eq!(
        h.store_files(),
        Vec::<String>::new(),
        "a valid body is not quarantined"
    );

    let response = h
        .ingest(&config, &queue, post(&[], body), received_at())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&queue).await.visible, 1);
    Ok(())
}
