//! `sparklake compact`: one compaction run over the lake (the data folder, or the bucket), or
//! with `--dry-run` what it would merge.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use compact::{Compactor, Policy, RunOptions};
use sparklake_core::encode::ParquetEncoder;

use crate::cli::PipelineArgs;
use crate::pipeline::now_millis;

/// `sparklake compact [--dry-run] [--all]`.
pub async fn compact(args: &PipelineArgs, dry_run: bool, all: bool) -> anyhow::Result<ExitCode> {
    let lake = args.lake().await?;
    let parquet = ParquetEncoder::new(args.output()?.parquet_timestamp);
    let policy =
        Policy::from_lookup(|name| std::env::var(name).ok()).map_err(anyhow::Error::msg)?;
    let compactor = Compactor {
        store: lake.as_ref(),
        parquet: &parquet,
        policy,
    };
    if dry_run {
        let mut planned = compactor.plan(all, now_millis()).await?;
        compactor.count_rows(&mut planned).await?;
        crate::out!(
            "{:<72} {:>8} {:>14} {:>10}",
            "partition",
            "objects",
            "bytes",
            "rows"
        );
        let (mut objects, mut bytes, mut rows) = (0usize, 0u64, 0u64);
        for plan in &planned {
            let n = plan.rows.unwrap_or(0);
            crate::out!(
                "{:<72} {:>8} {:>14} {:>10}",
                plan.partition.folder,
                plan.objects,
                plan.bytes,
                n
            );
            objects += plan.objects;
            bytes += plan.bytes;
            rows += n;
        }
        crate::out!(
            "would merge {} partition(s): {objects} objects, {bytes} bytes, {rows} rows (nothing changed: --dry-run)",
            planned.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let terminal = std::io::stderr().is_terminal();
    let bar = |done: usize, total: usize| {
        let width = 30;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        eprint!(
            "\r[{}{}] {done}/{total} partitions",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    };
    let options = RunOptions {
        all,
        progress: terminal.then_some(&bar as &(dyn Fn(usize, usize) + Sync)),
        ..RunOptions::default()
    };
    let report = compactor.run(&options, now_millis()).await?;
    crate::out!("{}", report.summary());
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
