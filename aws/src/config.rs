//! The AWS-side settings, read once from the environment, shared by the Lambdas and
//! `sparklake serve --backend aws`.

use std::collections::BTreeSet;

use crate::s3::Encryption;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

/// Every variable [`AwsSettings::from_lookup`] reads; `<NAME>` is each route's name, upper-cased
/// (the README's configuration table is tested against these lists).
pub const VARIABLES: &[&str] = &[
    "SPARKLAKE_COMPRESS",
    "SPARKLAKE_S3_FORCE_PATH_STYLE",
    "SPARKLAKE_MAX_MESSAGE_BYTES",
    "SPARKLAKE_PARTITION_VALUE_MAX_BYTES",
    "SPARKLAKE_S3_SSE",
    "SPARKLAKE_S3_KMS_KEY_ID",
    "SPARKLAKE_ROUTES",
    "SPARKLAKE_ROUTE_<NAME>_QUEUE_URL",
    "SPARKLAKE_INGEST_QUEUE_URL",
    "SPARKLAKE_WRITER_QUEUE_URL",
    "SPARKLAKE_BUCKET",
    "SPARKLAKE_PREFIX",
    "SPARKLAKE_ARCHIVE_STREAM",
    "SPARKLAKE_GLUE_DATABASE",
    "SPARKLAKE_GLUE_TABLES",
];

/// Where the pipeline's AWS resources are.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `SPARKLAKE_INGEST_QUEUE_URL`: ingest → fanout.
    pub ingest_queue_url: Option<String>,
    /// `SPARKLAKE_WRITER_QUEUE_URL`: fanout → writer.
    pub writer_queue_url: Option<String>,
    /// `SPARKLAKE_BUCKET`: output and quarantine.
    pub bucket: Option<String>,
    /// `SPARKLAKE_PREFIX`: key prefix in the bucket (default none).
    pub prefix: String,
    /// `SPARKLAKE_ARCHIVE_STREAM`: Firehose delivery stream for the raw archive (optional).
    pub archive_stream: Option<String>,
    /// `SPARKLAKE_S3_SSE`, `SPARKLAKE_S3_KMS_KEY_ID`.
    pub encryption: Encryption,
    /// `SPARKLAKE_COMPRESS`: zstd-compress queue bodies (default true).
    pub compress: bool,
    /// `SPARKLAKE_MAX_MESSAGE_BYTES`: queue message cap (default and maximum 1 MiB).
    pub max_message_bytes: usize,
    /// `SPARKLAKE_S3_FORCE_PATH_STYLE`: path-style S3 addressing, for S3-compatible endpoints and
    /// emulators that cannot resolve `bucket.host` names (default false).
    pub s3_force_path_style: bool,
    /// `SPARKLAKE_ROUTES` (`NAME=type,type;…`) with `SPARKLAKE_ROUTE_<NAME>_QUEUE_URL` for each.
    pub routes: Vec<RouteSetting>,
    /// `SPARKLAKE_PARTITION_VALUE_MAX_BYTES`: partition values longer than this are shortened to
    /// a prefix and a hash in object keys (default 0: off).
    pub partition_value_max_bytes: Option<usize>,
    /// `SPARKLAKE_GLUE_DATABASE`: the Glue database whose tables project `event_type`; the
    /// writer adds each new type it writes to them (unset: no catalog to keep in step).
    pub glue_database: Option<String>,
    /// `SPARKLAKE_GLUE_TABLES`: those tables, comma-separated (default `events,events_csv`).
    pub glue_tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSetting {
    pub name: String,
    pub event_types: BTreeSet<String>,
    pub queue_url: String,
}

impl AwsSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &'static str, default: bool| match get(name).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(SettingsError::Invalid(
                name,
                format!("`{other}` is not a boolean"),
            )),
        };
        let compress = flag("SPARKLAKE_COMPRESS", true)?;
        let s3_force_path_style = flag("SPARKLAKE_S3_FORCE_PATH_STYLE", false)?;
        let max_message_bytes = match get("SPARKLAKE_MAX_MESSAGE_BYTES") {
            None => crate::sqs::MAX_PAYLOAD_BYTES,
            Some(v) => v.parse().map_err(|_| {
                SettingsError::Invalid(
                    "SPARKLAKE_MAX_MESSAGE_BYTES",
                    format!("`{v}` is not a byte count"),
                )
            })?,
        };
        let partition_value_max_bytes = match get("SPARKLAKE_PARTITION_VALUE_MAX_BYTES") {
            None => None,
            Some(v) => parse_partition_value_max_bytes(&v)
                .map_err(|e| SettingsError::Invalid("SPARKLAKE_PARTITION_VALUE_MAX_BYTES", e))?,
        };
        let encryption = Encryption::from_settings(
            get("SPARKLAKE_S3_SSE").as_deref(),
            get("SPARKLAKE_S3_KMS_KEY_ID").as_deref(),
        )
        .map_err(|e| SettingsError::Invalid("SPARKLAKE_S3_SSE", e))?;
        let routes = match get("SPARKLAKE_ROUTES") {
            None => Vec::new(),
            Some(text) => parse_routes(&text)?
                .into_iter()
                .map(|(name, event_types)| {
                    let var = format!(
                        "SPARKLAKE_ROUTE_{}_QUEUE_URL",
                        name.to_ascii_uppercase().replace('-', "_")
                    );
                    let queue_url = get(&var).ok_or(SettingsError::Invalid(
                        "SPARKLAKE_ROUTES",
                        format!("{var} must be set for route `{name}`"),
                    ))?;
                    Ok(RouteSetting {
                        name,
                        event_types,
                        queue_url,
                    })
                })
                .collect::<Result<_, SettingsError>>()?,
        };
        Ok(Self {
            ingest_queue_url: get("SPARKLAKE_INGEST_QUEUE_URL"),
            writer_queue_url: get("SPARKLAKE_WRITER_QUEUE_URL"),
            bucket: get("SPARKLAKE_BUCKET"),
            prefix: get("SPARKLAKE_PREFIX").unwrap_or_default(),
            archive_stream: get("SPARKLAKE_ARCHIVE_STREAM"),
            encryption,
            compress,
            s3_force_path_style,
            max_message_bytes,
            routes,
            partition_value_max_bytes,
            glue_database: get("SPARKLAKE_GLUE_DATABASE"),
            glue_tables: get("SPARKLAKE_GLUE_TABLES")
                .unwrap_or_else(|| "events,events_csv".to_owned())
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        })
    }

    /// A setting the caller cannot run without.
    pub fn require<'s>(
        value: &'s Option<String>,
        name: &'static str,
    ) -> Result<&'s str, SettingsError> {
        value.as_deref().ok_or(SettingsError::Missing(name))
    }
}

/// `SPARKLAKE_PARTITION_VALUE_MAX_BYTES`: 0 is off, else at least
/// [`MIN_PARTITION_VALUE_BYTES`](sparklake_core::partition::MIN_PARTITION_VALUE_BYTES).
pub fn parse_partition_value_max_bytes(text: &str) -> Result<Option<usize>, String> {
    let min = sparklake_core::partition::MIN_PARTITION_VALUE_BYTES;
    match text.trim().parse::<usize>() {
        Ok(0) => Ok(None),
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "`{text}`: expected 0 (off) or a byte count of at least {min}"
        )),
    }
}

/// `NAME=type,type;NAME=type`: route names and their event types.
pub fn parse_routes(text: &str) -> Result<Vec<(String, BTreeSet<String>)>, SettingsError> {
    text.split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|route| {
            let invalid = || {
                SettingsError::Invalid(
                    "SPARKLAKE_ROUTES",
                    format!("`{route}`: expected NAME=type,type"),
                )
            };
            let (name, types) = route.split_once('=').ok_or_else(invalid)?;
            let name = name.trim();
            let types: BTreeSet<String> = types
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if name.is_empty()
                || types.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid());
            }
            Ok((name.to_owned(), types))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn variables_lists_every_variable_read() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let read = AwsSettings::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            match name {
                "SPARKLAKE_ROUTES" => Some("suppression=bounce".to_owned()),
                "SPARKLAKE_ROUTE_SUPPRESSION_QUEUE_URL" => Some("https://q".to_owned()),
                _ => None,
            }
        });
        assert!(read.is_ok());
        let asked: std::collections::BTreeSet<String> = asked
            .into_inner()
            .into_iter()
            .map(|n| n.replace("_SUPPRESSION_", "_<NAME>_"))
            .collect();
        let listed: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        assert_eq!(asked, listed);
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<AwsSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AwsSettings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_every_setting() {
        let s = settings(&[
            ("SPARKLAKE_INGEST_QUEUE_URL", "http://q/ingest"),
            ("SPARKLAKE_BUCKET", "lake"),
            ("SPARKLAKE_PREFIX", "/events/"),
            ("SPARKLAKE_COMPRESS", "false"),
            ("SPARKLAKE_S3_SSE", "aws:kms"),
            ("SPARKLAKE_S3_KMS_KEY_ID", "k-1"),
            ("SPARKLAKE_ROUTES", "suppression=bounce,list_unsubscribe"),
            ("SPARKLAKE_ROUTE_SUPPRESSION_QUEUE_URL", "http://q/supp"),
        ])
        .expect("valid");
        assert_eq!(s.bucket.as_deref(), Some("lake"));
        assert!(!s.compress);
        assert_eq!(s.encryption, Encryption::Kms(Some("k-1".into())));
        assert_eq!(s.routes.len(), 1);
        assert_eq!(s.routes[0].queue_url, "http://q/supp");
        assert!(s.routes[0].event_types.contains("list_unsubscribe"));
        assert_eq!(s.max_message_bytes, 1_048_576);
        assert_eq!(s.partition_value_max_bytes, None);
        let s = settings(&[("SPARKLAKE_PARTITION_VALUE_MAX_BYTES", "200")]).expect("valid");
        assert_eq!(s.partition_value_max_bytes, Some(200));
        let off = settings(&[("SPARKLAKE_PARTITION_VALUE_MAX_BYTES", "0")]).expect("valid");
        assert_eq!(off.partition_value_max_bytes, None);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(
            settings(&[("SPARKLAKE_ROUTES", "suppression=bounce")]).is_err(),
            "route without its queue"
        );
        assert!(settings(&[("SPARKLAKE_ROUTES", "=bounce")]).is_err());
        assert!(settings(&[("SPARKLAKE_S3_SSE", "rot13")]).is_err());
        assert!(settings(&[("SPARKLAKE_COMPRESS", "maybe")]).is_err());
        assert!(settings(&[("SPARKLAKE_MAX_MESSAGE_BYTES", "lots")]).is_err());
        assert!(settings(&[("SPARKLAKE_PARTITION_VALUE_MAX_BYTES", "8")]).is_err());
        assert_eq!(
            AwsSettings::require(&None, "SPARKLAKE_BUCKET"),
            Err(SettingsError::Missing("SPARKLAKE_BUCKET"))
        );
    }
}
