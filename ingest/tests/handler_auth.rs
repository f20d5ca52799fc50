//! The ingest handler's authentication (basic, bearer, custom header, their combinations, none)
//! and the configuration errors of its settings, over the in-memory queue and quarantine.
#![allow(clippy::unwrap_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use ingest::{ConfigError, IngestConfig};
use support::*;
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
    let h = Harness::new();
    let body = fixture(BATCH);
    for (what, headers) in refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = h.ingest(config, post(&headers, body.clone())).await;
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
        assert_eq!(h.queue.sent().len(), 0, "{what}: enqueued");
        assert_eq!(h.stored_keys(), Vec::<String>::new(), "{what}: stored");
    }
    for (n, (what, headers)) in accepted.iter().enumerate() {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = h.ingest(config, post(&headers, body.clone())).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(h.queue.sent().len(), n + 1, "{what}");
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
