//! What a run left on disk.

use std::path::{Path, PathBuf};

/// Every file under `dir` whose name ends with `suffix` (`""` for all), sorted; none if `dir`
/// is missing.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, suffix, out);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, suffix, &mut out);
    out.sort();
    out
}

/// Every file under `dir`, as `/`-separated paths relative to it, sorted; none if it is missing.
pub fn relative_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = files_ending(dir, "")
        .iter()
        .filter_map(|path| path.strip_prefix(dir).ok())
        .map(|relative| {
            relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    out.sort();
    out
}
