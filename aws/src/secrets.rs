//! Credentials kept in Secrets Manager rather than in the function's environment.
//!
//! `SPARKLAKE_AUTH_SECRET_ARN` names a secret whose string is a JSON object keyed by the same
//! variable names the environment would use (`{"SPARKLAKE_BEARER_TOKENS": "…"}`); the ingest
//! Lambda reads it once at start and looks variables up there after the environment.

use std::collections::HashMap;

use aws_sdk_secretsmanager::error::DisplayErrorContext;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading secret {arn}: {message}")]
    Read { arn: String, message: String },
    #[error("secret {arn} is not a JSON object of strings (its keys are SPARKLAKE_* names)")]
    Shape { arn: String },
}

/// The secret's key/value pairs. Values are never logged.
pub async fn read(
    sdk: &aws_config::SdkConfig,
    arn: &str,
) -> Result<HashMap<String, String>, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            arn: arn.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        })?;
    let text = output.secret_string().unwrap_or_default();
    parse(text).ok_or_else(|| SecretError::Shape {
        arn: arn.to_owned(),
    })
}

/// A JSON object of strings, or nothing.
pub fn parse(text: &str) -> Option<HashMap<String, String>> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_an_object_of_strings() {
        let pairs = parse(r#"{"SPARKLAKE_BEARER_TOKENS":"a,b"}"#).expect("object");
        assert_eq!(pairs["SPARKLAKE_BEARER_TOKENS"], "a,b");
        assert!(parse("[1]").is_none());
        assert!(parse(r#"{"k":1}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
