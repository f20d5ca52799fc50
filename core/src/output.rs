//! How the lake is written, one value for every writer (the Lambda, `serve`, `import`): the
//! Parquet timestamp type and which event timestamps may place an event. Read once, at start,
//! from a lookup (the environment, or flags that take precedence over it).

use crate::encode::TimestampType;
use crate::schema::TimestampPolicy;

/// Every variable [`OutputSettings::from_lookup`] reads (the README's configuration table is
/// tested against these lists).
pub const VARIABLES: &[&str] = &["SPARKLAKE_PARQUET_TIMESTAMP", "SPARKLAKE_TIMESTAMP_FLOOR"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputSettings {
    /// `SPARKLAKE_PARQUET_TIMESTAMP`: `int96` (default) or `millis`.
    pub parquet_timestamp: TimestampType,
    /// `SPARKLAKE_TIMESTAMP_FLOOR` (`YYYY-MM-DD`, default 2014-01-01): earlier event
    /// timestamps are implausible.
    pub timestamps: TimestampPolicy,
}

impl OutputSettings {
    /// Reads the variables above through `lookup` (unset or blank: the default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let parquet_timestamp = match get("SPARKLAKE_PARQUET_TIMESTAMP") {
            None => TimestampType::default(),
            Some(v) => v
                .parse()
                .map_err(|e| format!("SPARKLAKE_PARQUET_TIMESTAMP: {e}"))?,
        };
        let timestamps = match get("SPARKLAKE_TIMESTAMP_FLOOR") {
            None => TimestampPolicy::default(),
            Some(v) => TimestampPolicy::with_floor_date(&v)
                .map_err(|e| format!("SPARKLAKE_TIMESTAMP_FLOOR: {e}"))?,
        };
        Ok(Self {
            parquet_timestamp,
            timestamps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<OutputSettings, String> {
        OutputSettings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        let d = read(&[]).expect("defaults");
        assert_eq!(d.parquet_timestamp, TimestampType::Int96);
        assert_eq!(d.timestamps.floor_millis, 1_388_534_400_000);
        let s = read(&[
            ("SPARKLAKE_PARQUET_TIMESTAMP", "millis"),
            ("SPARKLAKE_TIMESTAMP_FLOOR", "2016-01-01"),
        ])
        .expect("valid");
        assert_eq!(s.parquet_timestamp, TimestampType::Millis);
        assert_eq!(s.timestamps.floor_millis, 1_451_606_400_000);
        assert!(read(&[("SPARKLAKE_PARQUET_TIMESTAMP", "nanos")]).is_err());
        assert!(read(&[("SPARKLAKE_TIMESTAMP_FLOOR", "yesterday")]).is_err());
    }

    #[test]
    fn variables_lists_every_variable_read() {
        let asked = std::cell::RefCell::new(Vec::new());
        let _ = OutputSettings::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        });
        assert_eq!(asked.into_inner(), VARIABLES);
    }
}
