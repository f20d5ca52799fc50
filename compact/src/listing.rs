//! The lake's objects grouped by partition: `<format>/event_type=<value>/dt=<date>/<name>.<ext>`
//! as the writer and the compactor name them. Keys of any other shape are not the lake's and
//! are never touched.

use std::collections::BTreeMap;

use sparklake_core::partition::Format;
use sparklake_core::ports::ObjectInfo;

/// One partition of one format: the folder `<format>/event_type=<value>/dt=<date>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionPath {
    /// `parquet/event_type=delivery/dt=2026-12-01`, without a trailing `/`.
    pub folder: String,
    pub format: Format,
}

impl PartitionPath {
    /// The key of an object named `name` (without extension) in this partition.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}.{}", self.folder, self.format.name())
    }

    /// The object's name without folder and extension, if `key` is an object of this partition.
    pub fn name_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.folder.as_str())?
            .strip_prefix('/')?
            .strip_suffix(self.format.name())?
            .strip_suffix('.')
    }
}

impl std::fmt::Display for PartitionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.folder)
    }
}

/// The partition an object key belongs to, if it is a lake object: exactly
/// `<format>/event_type=<v>/dt=<YYYY-MM-DD>/<name>.<format>` with a non-empty name that does
/// not start with `.` (temporary files) or `_` (what Hive and Athena skip).
pub fn partition_of(key: &str) -> Option<PartitionPath> {
    let (folder, file) = key.rsplit_once('/')?;
    let partition = partition_of_folder(folder)?;
    let name = file
        .strip_suffix(partition.format.name())?
        .strip_suffix('.')?;
    if name.is_empty() || name.starts_with('.') || name.starts_with('_') {
        return None;
    }
    Some(partition)
}

/// The partition a folder `<format>/event_type=<v>/dt=<YYYY-MM-DD>` is, if it is one.
pub fn partition_of_folder(folder: &str) -> Option<PartitionPath> {
    let mut parts = folder.split('/');
    let (top, event_type, dt) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let format = Format::ALL.into_iter().find(|f| f.name() == top)?;
    let value = event_type.strip_prefix("event_type=")?;
    let date = dt.strip_prefix("dt=")?;
    if value.is_empty() || chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
        return None;
    }
    Some(PartitionPath {
        folder: folder.to_owned(),
        format,
    })
}

/// Every lake object of `objects` by partition, each partition's objects in key order.
pub fn by_partition(objects: Vec<ObjectInfo>) -> BTreeMap<PartitionPath, Vec<ObjectInfo>> {
    let mut partitions: BTreeMap<PartitionPath, Vec<ObjectInfo>> = BTreeMap::new();
    for object in objects {
        if let Some(partition) = partition_of(&object.key) {
            partitions.entry(partition).or_default().push(object);
        }
    }
    for objects in partitions.values_mut() {
        objects.sort_by(|a, b| a.key.cmp(&b.key));
    }
    partitions
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_lake_objects_have_a_partition() {
        let p = partition_of("parquet/event_type=delivery/dt=2026-12-01/abc.parquet").unwrap();
        assert_eq!(p.folder, "parquet/event_type=delivery/dt=2026-12-01");
        assert_eq!(p.format, Format::Parquet);
        assert_eq!(
            p.key("c-1"),
            "parquet/event_type=delivery/dt=2026-12-01/c-1.parquet"
        );
        assert_eq!(
            p.name_of("parquet/event_type=delivery/dt=2026-12-01/abc.parquet"),
            Some("abc")
        );
        assert_eq!(
            p.name_of("parquet/event_type=delivery/dt=2026-12-01/abc.csv"),
            None
        );
        let c = partition_of("csv/event_type=odd%2Ftype/dt=2026-01-31/x.csv").unwrap();
        assert_eq!(c.format, Format::Csv);
        for key in [
            "parquet/event_type=delivery/dt=2026-12-01/abc.csv",
            "parquet/event_type=delivery/dt=2026-12-01/.abc.parquet.1.2.tmp",
            "parquet/event_type=delivery/dt=2026-12-01/_SUCCESS",
            "parquet/event_type=delivery/dt=2026-12-01/_x.parquet",
            "parquet/event_type=delivery/dt=2026-13-01/abc.parquet",
            "parquet/event_type=/dt=2026-12-01/abc.parquet",
            "parquet/type=delivery/dt=2026-12-01/abc.parquet",
            "parquet/event_type=delivery/dt=2026-12-01/sub/abc.parquet",
            "quarantine/dt=2026-12-01/abc.body",
            "_compaction/parquet/event_type=delivery/dt=2026-12-01.lock",
            "parquet/event_type=delivery/dt=2026-12-01/.parquet",
        ] {
            assert_eq!(partition_of(key), None, "{key}");
        }
    }

    #[test]
    fn objects_are_grouped_and_sorted() {
        let info = |key: &str| ObjectInfo {
            key: key.to_owned(),
            size: 1,
            modified_millis: 0,
        };
        let groups = by_partition(vec![
            info("parquet/event_type=a/dt=2026-12-01/b.parquet"),
            info("csv/event_type=a/dt=2026-12-01/a.csv"),
            info("parquet/event_type=a/dt=2026-12-01/a.parquet"),
            info("archive/dt=2026-12-01/x.ndjson"),
        ]);
        assert_eq!(groups.len(), 2);
        let parquet: Vec<&str> = groups
            .iter()
            .find(|(p, _)| p.format == Format::Parquet)
            .unwrap()
            .1
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(
            parquet,
            [
                "parquet/event_type=a/dt=2026-12-01/a.parquet",
                "parquet/event_type=a/dt=2026-12-01/b.parquet"
            ]
        );
    }
}
