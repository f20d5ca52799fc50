//! What a data folder holds: Parquet rows and files per (event_type, dt) partition.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

/// One partition's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionReport {
    pub rows: i64,
    pub files: Vec<PathBuf>,
}

/// Rows per `(event_type, dt)` as the Parquet footers say, keyed by the partition's folder names
/// (`event_type=bounce`, `dt=2016-02-02`), with every Parquet and CSV file under it.
pub fn partitions(data: &Path) -> io::Result<BTreeMap<(String, String), PartitionReport>> {
    let mut out: BTreeMap<(String, String), PartitionReport> = BTreeMap::new();
    for format in ["parquet", "csv"] {
        for (event_type, dt, file) in files_under(&data.join(format))? {
            let opened = match File::open(&file) {
                Ok(opened) => opened,
                // Merged away by a compaction since the folder was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let report = out.entry((event_type, dt)).or_default();
            if format == "parquet" {
                let reader = SerializedFileReader::new(opened).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", file.display()),
                    )
                })?;
                report.rows += reader.metadata().file_metadata().num_rows();
            }
            report.files.push(file);
        }
    }
    Ok(out)
}

fn files_under(root: &Path) -> io::Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    for event_type in sorted_dir(root)? {
        for dt in sorted_dir(&event_type)? {
            for file in sorted_dir(&dt)? {
                let name = |p: &Path| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                if file.is_file() && !name(&file).starts_with('.') {
                    let t = name(&event_type)
                        .trim_start_matches("event_type=")
                        .to_owned();
                    let d = name(&dt).trim_start_matches("dt=").to_owned();
                    out.push((t, d, file));
                }
            }
        }
    }
    Ok(out)
}

fn sorted_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths = entries
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<Vec<_>>>()?;
            paths.sort();
            Ok(paths)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A plain-text table of the partitions, for people.
pub fn table(data: &Path, partitions: &BTreeMap<(String, String), PartitionReport>) -> String {
    let mut out = format!("{:<24} {:<11} {:>5}  files\n", "event_type", "dt", "rows");
    let mut total = 0;
    for ((event_type, dt), report) in partitions {
        total += report.rows;
        let files: Vec<String> = report
            .files
            .iter()
            .map(|f| f.strip_prefix(data).unwrap_or(f).display().to_string())
            .collect();
        // Name the files while there are few (the demo); count them once there are many.
        let files = if files.len() <= 2 {
            files.join("  ")
        } else {
            format!(
                "{} files under {{parquet,csv}}/event_type={event_type}/dt={dt}/",
                files.len()
            )
        };
        out.push_str(&format!(
            "{event_type:<24} {dt:<11} {:>5}  {files}\n",
            report.rows
        ));
    }
    out.push_str(&format!("{:<24} {:<11} {total:>5}\n", "total", ""));
    out
}
