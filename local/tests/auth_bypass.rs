//! Authentication bypass attempts, table-driven: for every auth mode and combination, each
//! attempt is refused with 401 (and `WWW-Authenticate` where the mode has a scheme), nothing is
//! enqueued or stored, and only the valid credentials pass. First against the ingest handler
//! (every byte of every header under the test's control), then a few rows over real HTTP against
//! `sparklake serve`, where the HTTP parser meets CR/LF injection, NUL bytes and huge headers.
//!
//! RFC behaviour is kept where it is standard: auth scheme names are case-insensitive
//! (`bearer`, `BASIC`), one or more spaces may separate the scheme from the credential, and
//! whitespace around a whole field value is not part of it (RFC 9110 5.5, RFC 7235 2.1). Secrets
//! are compared exactly: case, length and every byte. A field that must be single (Authorization,
//! the custom header) sent twice is refused even when one copy is right: a proxy in front could
//! pick the other copy.
#![allow(clippy::unwrap_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use ingest::IngestConfig;
use sparklake::queue::QueueConfig;
use sparklake_core::ports::QueueCounts;
use support::fixtures::*;
use support::handlers::*;
use support::http::*;
use support::lake::written_event_ids;
use support::process::*;

const USER: &str = "sparkpost";
const PASSWORD: &str = "S3cret-Pw";
const TOKENS: [&str; 3] = ["Tok-Alpha-1", "Tok-Beta-22", "Tok-Gamma-333"];
const HEADER: &str = "X-Webhook-Secret";
const HEADER_VALUE: &str = "Hdr-Value-1";

/// One request's headers: raw name and value bytes, in order (a name may repeat).
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn h(name: &str, value: impl AsRef<[u8]>) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.as_ref().to_vec())
}

fn authz(value: impl AsRef<[u8]>) -> Headers {
    vec![h("authorization", value)]
}

fn basic(credentials: &str) -> String {
    format!("Basic {}", STANDARD.encode(credentials))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn swap_case(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// Attempts at `Authorization` built around one valid value `good` of scheme `scheme` whose
/// credential is `secret` (the token, or the base64 of `user:password`): each must be refused.
fn authorization_attacks(scheme: &str, secret: &str) -> Vec<(String, Headers)> {
    let good = format!("{scheme} {secret}");
    let mut long = good.clone().into_bytes();
    long.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut non_utf8 = good.clone().into_bytes();
    non_utf8.push(0xff);
    let mut latin1 = format!("{scheme} ").into_bytes();
    latin1.extend(secret.bytes());
    latin1[scheme.len() + 1] = 0xe9;
    let last = secret.len() - 1;
    vec![
        ("missing header".into(), vec![]),
        ("empty value".into(), authz("")),
        ("scheme only".into(), authz(scheme)),
        ("scheme and blanks".into(), authz(format!("{scheme}   "))),
        ("credential without scheme".into(), authz(secret)),
        ("unknown scheme".into(), authz(format!("Token {secret}"))),
        ("Digest scheme".into(), authz(format!("Digest {secret}"))),
        (
            "scheme glued to the credential".into(),
            authz(format!("{scheme}{secret}")),
        ),
        (
            "scheme and credential joined by =".into(),
            authz(format!("{scheme}={secret}")),
        ),
        (
            "scheme and credential joined by :".into(),
            authz(format!("{scheme}:{secret}")),
        ),
        (
            "tab between scheme and credential".into(),
            authz(format!("{scheme}\t{secret}")),
        ),
        (
            "secret in swapped case".into(),
            authz(format!("{scheme} {}", swap_case(secret))),
        ),
        (
            "secret upper-cased".into(),
            authz(format!("{scheme} {}", secret.to_ascii_uppercase())),
        ),
        (
            "prefix of the secret".into(),
            authz(format!("{scheme} {}", &secret[..last])),
        ),
        (
            "all but the first byte".into(),
            authz(format!("{scheme} {}", &secret[1..])),
        ),
        ("secret with a suffix".into(), authz(format!("{good}x"))),
        (
            "secret with a prefix".into(),
            authz(format!("{scheme} x{secret}")),
        ),
        (
            "last byte changed".into(),
            authz(format!("{scheme} {}~", &secret[..last])),
        ),
        (
            "space inside the secret".into(),
            authz(format!("{scheme} {} {}", &secret[..2], &secret[2..])),
        ),
        (
            "tab inside the secret".into(),
            authz(format!("{scheme} {}\t{}", &secret[..2], &secret[2..])),
        ),
        (
            "secret twice".into(),
            authz(format!("{scheme} {secret} {secret}")),
        ),
        (
            "secret and a second word".into(),
            authz(format!("{good} extra")),
        ),
        (
            "secret and a tab-separated word".into(),
            authz(format!("{good}\textra")),
        ),
        (
            "secret, comma, secret".into(),
            authz(format!("{good},{secret}")),
        ),
        (
            "quoted secret".into(),
            authz(format!("{scheme} \"{secret}\"")),
        ),
        (
            "two schemes".into(),
            authz(format!("{scheme} {scheme} {secret}")),
        ),
        ("non-UTF-8 byte after the secret".into(), authz(non_utf8)),
        ("latin-1 byte in the secret".into(), authz(latin1)),
        (
            "UTF-8 lookalike letter in the secret".into(),
            authz(format!("{scheme} \u{0410}{}", &secret[1..])),
        ),
        ("64 KiB after the secret".into(), authz(long)),
        (
            "duplicated: right then wrong".into(),
            vec![h("authorization", &good), h("authorization", "Bearer x")],
        ),
        (
            "duplicated: wrong then right".into(),
            vec![h("authorization", "Bearer x"), h("authorization", &good)],
        ),
        (
            "duplicated: right twice".into(),
            vec![h("authorization", &good), h("authorization", &good)],
        ),
        (
            "secret in another header".into(),
            vec![h("x-authorization", &good)],
        ),
        (
            "secret in Proxy-Authorization".into(),
            vec![h("proxy-authorization", &good)],
        ),
    ]
}

/// Attempts specific to basic: the decoded `user:password` and its encodings.
fn basic_attacks() -> Vec<(String, Headers)> {
    let encoded = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let mut spaced = encoded.clone();
    spaced.insert(4, ' ');
    vec![
        ("empty user and password".into(), authz(basic(":"))),
        ("empty password".into(), authz(basic(&format!("{USER}:")))),
        ("empty user".into(), authz(basic(&format!(":{PASSWORD}")))),
        ("password only".into(), authz(basic(PASSWORD))),
        ("user only".into(), authz(basic(USER))),
        (
            "user and password without colon".into(),
            authz(basic(&format!("{USER}{PASSWORD}"))),
        ),
        (
            "user and password swapped".into(),
            authz(basic(&format!("{PASSWORD}:{USER}"))),
        ),
        (
            "user in another case".into(),
            authz(basic(&format!("SparkPost:{PASSWORD}"))),
        ),
        (
            "password in swapped case".into(),
            authz(basic(&format!("{USER}:{}", swap_case(PASSWORD)))),
        ),
        (
            "trailing colon".into(),
            authz(basic(&format!("{USER}:{PASSWORD}:"))),
        ),
        (
            "space after the colon".into(),
            authz(basic(&format!("{USER}: {PASSWORD}"))),
        ),
        (
            "space before the colon".into(),
            authz(basic(&format!("{USER} :{PASSWORD}"))),
        ),
        (
            "NUL after the password".into(),
            authz(basic(&format!("{USER}:{PASSWORD}\0"))),
        ),
        (
            "newline after the password".into(),
            authz(basic(&format!("{USER}:{PASSWORD}\n"))),
        ),
        (
            "password twice".into(),
            authz(basic(&format!("{USER}:{PASSWORD}:{PASSWORD}"))),
        ),
        (
            "base64 without padding".into(),
            authz(format!(
                "Basic {}",
                STANDARD_NO_PAD.encode(format!("{USER}:{PASSWORD}"))
            )),
        ),
        (
            "base64url alphabet".into(),
            authz(format!(
                "Basic {}",
                URL_SAFE.encode(format!("{USER}:{PASSWORD}?>"))
            )),
        ),
        (
            "space inside the base64".into(),
            authz(format!("Basic {spaced}")),
        ),
        (
            "plain user:password, not base64".into(),
            authz(format!("Basic {USER}:{PASSWORD}")),
        ),
        (
            "base64 of the digest".into(),
            authz(format!("Basic {}", STANDARD.encode([0u8; 32]))),
        ),
    ]
}

/// Builds a `POST /` with raw header bytes; `None` when the `http` types refuse a byte (NUL, CR,
/// LF and other controls cannot be in a `HeaderValue`, so they can never reach the handler).
fn request_with(headers: &Headers, body: Bytes) -> Option<Request<Bytes>> {
    let mut request = Request::builder()
        .method("POST")
        .uri("/")
        .body(body)
        .unwrap();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_bytes(value).ok()?;
        request.headers_mut().append(name, value);
    }
    Some(request)
}

/// Runs the table: every `refused` row → 401 with the challenge (if any), nothing enqueued or
/// stored; every `accepted` row → 200 and one more message.
async fn run_table(
    what: &str,
    config: &IngestConfig,
    refused: &[(String, Headers)],
    accepted: &[(String, Headers)],
    challenge: Option<&str>,
) -> TestResult {
    let harness = Harness::new()?;
    let queue = harness.queue("ingest", QueueConfig::default());
    let body = Bytes::from(fixture("sparkpost/batch.json"));
    for (name, headers) in refused {
        let request = request_with(headers, body.clone())
            .unwrap_or_else(|| panic!("{what}/{name}: not a representable request"));
        let response = harness.ingest(config, &queue, request, received_at()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{what}/{name} must be refused"
        );
        let www = response.headers().get(WWW_AUTHENTICATE);
        match challenge {
            Some(scheme) => {
                let www = www
                    .unwrap_or_else(|| panic!("{what}/{name}: 401 without WWW-Authenticate"))
                    .to_str()?;
                assert!(
                    www.starts_with(&format!("{scheme} ")),
                    "{what}/{name}: {www}"
                );
            }
            None => assert!(www.is_none(), "{what}/{name}"),
        }
        assert_eq!(error_text(&response), "unauthorized", "{what}/{name}");
        assert_eq!(
            queue.counts().await?,
            QueueCounts::default(),
            "{what}/{name} enqueued"
        );
        assert!(harness.store_files().is_empty(), "{what}/{name} stored");
    }
    for (n, (name, headers)) in accepted.iter().enumerate() {
        let request = request_with(headers, body.clone()).expect("representable");
        let response = harness.ingest(config, &queue, request, received_at()).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}/{name} must pass");
        assert_eq!(queue.counts().await?.visible, n as u64 + 1, "{what}/{name}");
    }
    Ok(())
}

fn cfg(vars: &[(&str, &str)]) -> IngestConfig {
    config(vars).expect("a valid configuration")
}

fn basic_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SPARKLAKE_BASIC_USER", USER),
        ("SPARKLAKE_BASIC_PASSWORD", PASSWORD),
    ]
}

fn header_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SPARKLAKE_HEADER_NAME", HEADER),
        ("SPARKLAKE_HEADER_VALUE", HEADER_VALUE),
    ]
}

fn tokens() -> String {
    TOKENS.join(",")
}

/// Valid `Authorization` values in every form the RFCs allow.
fn authorization_forms(scheme: &str, secret: &str) -> Vec<(String, Headers)> {
    vec![
        ("as documented".into(), authz(format!("{scheme} {secret}"))),
        (
            "scheme lower-cased".into(),
            authz(format!("{} {secret}", scheme.to_lowercase())),
        ),
        (
            "scheme upper-cased".into(),
            authz(format!("{} {secret}", scheme.to_uppercase())),
        ),
        (
            "several spaces after the scheme (1*SP)".into(),
            authz(format!("{scheme}   {secret}")),
        ),
        (
            "whitespace around the field value".into(),
            authz(format!(" \t{scheme} {secret} \t")),
        ),
    ]
}

#[tokio::test]
async fn basic_refuses_every_bypass_attempt() -> TestResult {
    let mut vars = vec![("SPARKLAKE_AUTH", "basic")];
    vars.extend(basic_vars());
    let config = cfg(&vars);
    let secret = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let mut refused = authorization_attacks("Basic", &secret);
    refused.extend(basic_attacks());
    refused.push((
        "bearer carrying the password".into(),
        authz(bearer(PASSWORD)),
    ));
    refused.push((
        "bearer carrying user:password".into(),
        authz(bearer(&format!("{USER}:{PASSWORD}"))),
    ));
    refused.push(("bearer carrying the base64".into(), authz(bearer(&secret))));
    let accepted = authorization_forms("Basic", &secret);
    run_table("basic", &config, &refused, &accepted, Some("Basic")).await
}

#[tokio::test]
async fn bearer_with_several_tokens_refuses_every_bypass_attempt() -> TestResult {
    let tokens = tokens();
    let config = cfg(&[
        ("SPARKLAKE_AUTH", "bearer"),
        ("SPARKLAKE_BEARER_TOKENS", &tokens),
    ]);
    let mut refused = Vec::new();
    for token in TOKENS {
        for (name, headers) in authorization_attacks("Bearer", token) {
            refused.push((format!("{token}: {name}"), headers));
        }
        refused.push((
            format!("{token} as basic password"),
            authz(basic(&format!("{USER}:{token}"))),
        ));
        refused.push((
            format!("{token} as basic user:token"),
            authz(basic(&format!("{token}:{token}"))),
        ));
    }
    refused.push(("the configured list".into(), authz(bearer(&tokens))));
    refused.push((
        "two tokens glued".into(),
        authz(bearer(&format!("{}{}", TOKENS[0], TOKENS[1]))),
    ));
    refused.push((
        "a header secret as token".into(),
        authz(bearer(HEADER_VALUE)),
    ));
    let mut accepted = Vec::new();
    for token in TOKENS {
        for (name, headers) in authorization_forms("Bearer", token) {
            accepted.push((format!("{token}: {name}"), headers));
        }
    }
    run_table("bearer", &config, &refused, &accepted, Some("Bearer")).await
}

/// Attempts at the custom header: its value must match exactly and it must be single.
fn header_attacks() -> Vec<(String, Headers)> {
    let mut long = HEADER_VALUE.as_bytes().to_vec();
    long.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let mut non_utf8 = HEADER_VALUE.as_bytes().to_vec();
    non_utf8.push(0xff);
    let last = HEADER_VALUE.len() - 1;
    let one = |v: &[u8]| vec![h(HEADER, v)];
    vec![
        ("missing header".into(), vec![]),
        ("empty value".into(), one(b"")),
        (
            "value in swapped case".into(),
            one(swap_case(HEADER_VALUE).as_bytes()),
        ),
        (
            "prefix of the value".into(),
            one(&HEADER_VALUE.as_bytes()[..last]),
        ),
        (
            "value with a suffix".into(),
            one(format!("{HEADER_VALUE}x").as_bytes()),
        ),
        (
            "value with a trailing space".into(),
            one(format!("{HEADER_VALUE} ").as_bytes()),
        ),
        (
            "value with a leading tab".into(),
            one(format!("\t{HEADER_VALUE}").as_bytes()),
        ),
        (
            "value with a second word".into(),
            one(format!("{HEADER_VALUE} x").as_bytes()),
        ),
        ("non-UTF-8 byte after the value".into(), one(&non_utf8)),
        ("64 KiB after the value".into(), one(&long)),
        (
            "duplicated: right then wrong".into(),
            vec![h(HEADER, HEADER_VALUE), h(HEADER, "wrong")],
        ),
        (
            "duplicated: wrong then right".into(),
            vec![h(HEADER, "wrong"), h(HEADER, HEADER_VALUE)],
        ),
        (
            "duplicated: right twice".into(),
            vec![h(HEADER, HEADER_VALUE), h(HEADER, HEADER_VALUE)],
        ),
        (
            "value in a similarly named header".into(),
            vec![h("x-webhook-secrets", HEADER_VALUE)],
        ),
        ("value as bearer token".into(), authz(bearer(HEADER_VALUE))),
        (
            "value as basic password".into(),
            authz(basic(&format!("{USER}:{HEADER_VALUE}"))),
        ),
        (
            "header name with the value".into(),
            authz(format!("{HEADER} {HEADER_VALUE}")),
        ),
    ]
}

#[tokio::test]
async fn custom_header_refuses_every_bypass_attempt() -> TestResult {
    let mut vars = vec![("SPARKLAKE_AUTH", "header")];
    vars.extend(header_vars());
    let config = cfg(&vars);
    let accepted = vec![
        ("right value".to_owned(), vec![h(HEADER, HEADER_VALUE)]),
        (
            "header name in another case (names are case-insensitive)".to_owned(),
            vec![h("X-WEBHOOK-SECRET", HEADER_VALUE)],
        ),
        (
            "right value beside an unrelated Authorization".to_owned(),
            vec![
                h(HEADER, HEADER_VALUE),
                h("authorization", "Bearer whatever"),
            ],
        ),
    ];
    // A custom header has no HTTP auth scheme to name in a challenge (and naming the header
    // would tell a stranger what to send): its 401 carries none.
    run_table("header", &config, &header_attacks(), &accepted, None).await
}

#[tokio::test]
async fn basic_and_header_together_need_both() -> TestResult {
    let mut vars = vec![("SPARKLAKE_AUTH", "basic,header")];
    vars.extend(basic_vars());
    vars.extend(header_vars());
    let config = cfg(&vars);
    let good_basic = h("authorization", basic(&format!("{USER}:{PASSWORD}")));
    let good_header = h(HEADER, HEADER_VALUE);
    let mut refused: Vec<(String, Headers)> = Vec::new();
    for (name, mut headers) in header_attacks() {
        if !headers.iter().any(|(n, _)| n == b"authorization") {
            headers.push(good_basic.clone());
            refused.push((format!("right basic, {name}"), headers));
        }
    }
    let secret = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for (name, mut headers) in authorization_attacks("Basic", &secret)
        .into_iter()
        .chain(basic_attacks())
    {
        headers.push(good_header.clone());
        refused.push((format!("right header, {name}"), headers));
    }
    refused.push(("basic only".into(), vec![good_basic.clone()]));
    refused.push(("header only".into(), vec![good_header.clone()]));
    refused.push((
        "header value as basic password, right header".into(),
        vec![
            h("authorization", basic(&format!("{USER}:{HEADER_VALUE}"))),
            good_header.clone(),
        ],
    ));
    let accepted = vec![
        (
            "both".to_owned(),
            vec![good_basic.clone(), good_header.clone()],
        ),
        (
            "both, header first".to_owned(),
            vec![good_header, good_basic],
        ),
    ];
    run_table("basic,header", &config, &refused, &accepted, Some("Basic")).await
}

#[tokio::test]
async fn basic_and_bearer_together_accept_either_and_nothing_else() -> TestResult {
    let mut vars = vec![
        ("SPARKLAKE_AUTH", "basic,bearer"),
        ("SPARKLAKE_BEARER_TOKENS", TOKENS[0]),
    ];
    vars.extend(basic_vars());
    let config = cfg(&vars);
    let secret = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let mut refused = authorization_attacks("Basic", &secret);
    refused.extend(authorization_attacks("Bearer", TOKENS[0]));
    refused.extend(basic_attacks());
    refused.push((
        "token as basic password".into(),
        authz(basic(&format!("{USER}:{}", TOKENS[0]))),
    ));
    refused.push(("password as token".into(), authz(bearer(PASSWORD))));
    refused.push((
        "basic and bearer, both right, duplicated field".into(),
        vec![
            h("authorization", basic(&format!("{USER}:{PASSWORD}"))),
            h("authorization", bearer(TOKENS[0])),
        ],
    ));
    refused.push((
        "basic and bearer in one field".into(),
        authz(format!("Basic {secret}, Bearer {}", TOKENS[0])),
    ));
    let mut accepted = authorization_forms("Basic", &secret);
    accepted.extend(authorization_forms("Bearer", TOKENS[0]));
    run_table("basic,bearer", &config, &refused, &accepted, Some("Basic")).await
}

#[tokio::test]
async fn bearer_and_header_together_need_both() -> TestResult {
    let tokens = tokens();
    let mut vars = vec![
        ("SPARKLAKE_AUTH", "bearer,header"),
        ("SPARKLAKE_BEARER_TOKENS", tokens.as_str()),
    ];
    vars.extend(header_vars());
    let config = cfg(&vars);
    let good_header = h(HEADER, HEADER_VALUE);
    let mut refused: Vec<(String, Headers)> = authorization_attacks("Bearer", TOKENS[1])
        .into_iter()
        .map(|(name, mut headers)| {
            headers.push(good_header.clone());
            (format!("right header, {name}"), headers)
        })
        .collect();
    refused.push(("token only".into(), authz(bearer(TOKENS[1]))));
    refused.push((
        "token in the custom header, header value as token".into(),
        vec![
            h(HEADER, TOKENS[1]),
            h("authorization", bearer(HEADER_VALUE)),
        ],
    ));
    let accepted: Vec<(String, Headers)> = TOKENS
        .iter()
        .map(|t| {
            (
                format!("{t} and header"),
                vec![h("authorization", bearer(t)), good_header.clone()],
            )
        })
        .collect();
    run_table(
        "bearer,header",
        &config,
        &refused,
        &accepted,
        Some("Bearer"),
    )
    .await
}

/// Rotation: the previous password (or header value) is accepted beside the current one until
/// it is removed from the configuration; nothing else is.
#[tokio::test]
async fn rotation_accepts_the_previous_credential_beside_the_new_one() -> TestResult {
    let config = cfg(&[
        ("SPARKLAKE_AUTH", "basic,header"),
        ("SPARKLAKE_BASIC_USER", USER),
        ("SPARKLAKE_BASIC_PASSWORD", "New-Pw-2"),
        ("SPARKLAKE_BASIC_PASSWORD_PREVIOUS", PASSWORD),
        ("SPARKLAKE_HEADER_NAME", HEADER),
        ("SPARKLAKE_HEADER_VALUE", "New-Hdr-2"),
        ("SPARKLAKE_HEADER_VALUE_PREVIOUS", HEADER_VALUE),
    ]);
    let with = |user: &str, pw: &str, hdr: &str| {
        vec![
            h("authorization", basic(&format!("{user}:{pw}"))),
            h(HEADER, hdr),
        ]
    };
    let refused = vec![
        (
            "old password as new user".to_owned(),
            with(PASSWORD, "New-Pw-2", "New-Hdr-2"),
        ),
        (
            "passwords concatenated".to_owned(),
            with(USER, &format!("New-Pw-2{PASSWORD}"), "New-Hdr-2"),
        ),
        (
            "a third password".to_owned(),
            with(USER, "Old-Old-Pw", "New-Hdr-2"),
        ),
        (
            "a third header value".to_owned(),
            with(USER, "New-Pw-2", "Old-Old-Hdr"),
        ),
        (
            "header values concatenated".to_owned(),
            with(USER, "New-Pw-2", &format!("New-Hdr-2{HEADER_VALUE}")),
        ),
    ];
    let accepted = vec![
        (
            "new and new".to_owned(),
            with(USER, "New-Pw-2", "New-Hdr-2"),
        ),
        ("old and old".to_owned(), with(USER, PASSWORD, HEADER_VALUE)),
        (
            "new password, old header".to_owned(),
            with(USER, "New-Pw-2", HEADER_VALUE),
        ),
        (
            "old password, new header".to_owned(),
            with(USER, PASSWORD, "New-Hdr-2"),
        ),
    ];
    run_table("rotation", &config, &refused, &accepted, Some("Basic")).await?;

    // A new user name can come with the new password; the previous pair keeps its own user.
    let config = cfg(&[
        ("SPARKLAKE_AUTH", "basic"),
        ("SPARKLAKE_BASIC_USER", "hook-2"),
        ("SPARKLAKE_BASIC_PASSWORD", "New-Pw-2"),
        ("SPARKLAKE_BASIC_USER_PREVIOUS", USER),
        ("SPARKLAKE_BASIC_PASSWORD_PREVIOUS", PASSWORD),
    ]);
    let refused = vec![
        (
            "new user, old password".to_owned(),
            authz(basic(&format!("hook-2:{PASSWORD}"))),
        ),
        (
            "old user, new password".to_owned(),
            authz(basic(&format!("{USER}:New-Pw-2"))),
        ),
    ];
    let accepted = vec![
        ("new pair".to_owned(), authz(basic("hook-2:New-Pw-2"))),
        (
            "old pair".to_owned(),
            authz(basic(&format!("{USER}:{PASSWORD}"))),
        ),
    ];
    run_table(
        "rotation of the user",
        &config,
        &refused,
        &accepted,
        Some("Basic"),
    )
    .await
}

#[test]
fn configurations_that_would_weaken_auth_are_refused() {
    // `a:b` + `c` would also accept user `a` with password `b:c`.
    assert!(matches!(
        config(&[
            ("SPARKLAKE_AUTH", "basic"),
            ("SPARKLAKE_BASIC_USER", "a:b"),
            ("SPARKLAKE_BASIC_PASSWORD", "c"),
        ]),
        Err(ingest::ConfigError::Invalid("SPARKLAKE_BASIC_USER", _))
    ));
    // A token no well-formed header can carry.
    for token in ["two words", "tab\there", "caf\u{e9}"] {
        assert!(
            matches!(
                config(&[
                    ("SPARKLAKE_AUTH", "bearer"),
                    ("SPARKLAKE_BEARER_TOKENS", &format!("ok,{token}")),
                ]),
                Err(ingest::ConfigError::Invalid("SPARKLAKE_BEARER_TOKENS", _))
            ),
            "{token:?}"
        );
    }
}

#[test]
fn control_bytes_cannot_reach_the_handler_in_a_header() {
    // CR and LF (header injection), NUL and the other controls are refused by the `http` types
    // before any handler sees them; over HTTP the parser refuses them (tested below).
    for bad in [
        &b"Bearer a\r\nX-Injected: 1"[..],
        b"Bearer a\nb",
        b"Bearer a\rb",
        b"Bearer a\0b",
        b"Bearer \x7f",
        b"Bearer \x1b",
    ] {
        assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Over HTTP, against the real `sparklake serve`.

/// A two-event batch whose ids start with `tag`.
fn small_batch(tag: &str) -> Vec<u8> {
    format!(
        r#"[{{"msys":{{"message_event":{{"type":"delivery","event_id":"{tag}-1","timestamp":"1454442600"}}}}}},{{"msys":{{"track_event":{{"type":"open","event_id":"{tag}-2","timestamp":"1454442600"}}}}}}]"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_bypass_attempts_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut command = sparklake();
    command
        .env("SPARKLAKE_AUTH", "basic,bearer,header")
        .env("SPARKLAKE_BASIC_USER", USER)
        .env("SPARKLAKE_BASIC_PASSWORD", PASSWORD)
        .env("SPARKLAKE_BEARER_TOKENS", tokens())
        .env("SPARKLAKE_HEADER_NAME", HEADER)
        .env("SPARKLAKE_HEADER_VALUE", HEADER_VALUE)
        .env("SPARKLAKE_LOG", "warn")
        .stderr(std::process::Stdio::null());
    let Server { mut child, addr } = Server::start(serve(command, &data, &[]));
    let token = TOKENS[2];
    let good_header = format!("{HEADER}: {HEADER_VALUE}\r\n");
    let good_bearer = format!("Authorization: Bearer {token}\r\n");
    let good_basic = format!(
        "Authorization: {}\r\n",
        basic(&format!("{USER}:{PASSWORD}"))
    );

    // (what, header lines, what may answer). 401 rows reach the handler; `parser` rows are
    // refused by the HTTP parser before it (400 or 431): either way nothing is accepted.
    let unauthorized = [401u16].as_slice();
    let parser = [400u16, 431].as_slice();
    let mut huge = good_bearer.clone().into_bytes();
    huge.truncate(huge.len() - 2);
    huge.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    huge.extend_from_slice(b"\r\n");
    huge.extend_from_slice(good_header.as_bytes());
    let mut non_utf8 = format!("Authorization: Bearer {token}").into_bytes();
    non_utf8.extend_from_slice(b"\xff\r\n");
    non_utf8.extend_from_slice(good_header.as_bytes());
    let rows: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("no credential", b"".to_vec(), unauthorized),
        (
            "custom header only",
            good_header.clone().into_bytes(),
            unauthorized,
        ),
        (
            "bearer only",
            good_bearer.clone().into_bytes(),
            unauthorized,
        ),
        (
            "CRLF injected: a wrong Authorization then the right one",
            format!("Authorization: Bearer nope\r\nAuthorization: Bearer {token}\r\n{good_header}")
                .into_bytes(),
            unauthorized,
        ),
        (
            "CRLF injected: the right custom header after a wrong one",
            format!("{good_bearer}{HEADER}: nope\r\n{good_header}").into_bytes(),
            unauthorized,
        ),
        (
            "obs-fold: the token on a continuation line",
            format!("Authorization: Bearer\r\n {token}\r\n{good_header}").into_bytes(),
            parser,
        ),
        (
            "bare CR inside the value",
            format!("Authorization: Bearer x\rAuthorization: Bearer {token}\r\n{good_header}")
                .into_bytes(),
            parser,
        ),
        (
            "NUL inside the value",
            format!("Authorization: Bearer {token}\0\r\n{good_header}").into_bytes(),
            parser,
        ),
        (
            "space before the colon",
            format!("Authorization : Bearer {token}\r\n{good_header}").into_bytes(),
            parser,
        ),
        ("non-UTF-8 byte after the token", non_utf8, unauthorized),
        ("1 MiB Authorization", huge, parser),
        (
            "token in swapped case",
            format!(
                "Authorization: Bearer {}\r\n{good_header}",
                swap_case(token)
            )
            .into_bytes(),
            unauthorized,
        ),
        (
            "tab between scheme and token",
            format!("Authorization: Bearer\t{token}\r\n{good_header}").into_bytes(),
            unauthorized,
        ),
        (
            "header value as the token",
            format!("Authorization: Bearer {HEADER_VALUE}\r\n{HEADER}: {token}\r\n").into_bytes(),
            unauthorized,
        ),
    ];
    for (what, headers, allowed) in &rows {
        let answer = post_with(&addr, headers, &small_batch("refused")).await;
        assert!(
            allowed.contains(&answer.status),
            "{what}: answered {} ({})",
            answer.status,
            answer.body
        );
        if answer.status == 401 {
            let www = answer.header("www-authenticate").unwrap_or_default();
            assert!(www.starts_with("Basic "), "{what}: {www:?}");
        }
        assert!(alive(&mut child), "{what}: serve died");
    }

    let accepted: Vec<(&str, String)> = vec![
        ("bearer and header", format!("{good_bearer}{good_header}")),
        ("basic and header", format!("{good_basic}{good_header}")),
        (
            "lower-case names, upper-case scheme",
            format!("authorization: BEARER {token}\r\nx-webhook-secret: {HEADER_VALUE}\r\n"),
        ),
    ];
    for (n, (what, headers)) in accepted.iter().enumerate() {
        let answer = post_with(&addr, headers.as_bytes(), &small_batch(&format!("ok{n}"))).await;
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    }
    terminate(child);
    let mut ids = written_event_ids(&data);
    ids.sort();
    assert_eq!(
        ids,
        ["ok0-1", "ok0-2", "ok1-1", "ok1-2", "ok2-1", "ok2-2"],
        "only the accepted posts were written"
    );
}
