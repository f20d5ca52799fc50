//! The `sparklake` commands, one file each; [`run`] dispatches a parsed command line to them.

use std::process::ExitCode;

use crate::cli::Command;

pub mod compact;
pub mod demo;
pub mod import;
pub mod redrive;
pub mod schema;
pub mod serve;
pub mod status;

/// Runs one command to its exit code.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { listen, pipeline } => {
            pipeline.remove_orphan_temp_files();
            serve::serve(&listen, pipeline.open().await?).await
        }
        Command::Demo { data } => demo::demo(data).await,
        Command::Schema { format } => schema::schema(&format),
        Command::Import { pipeline, files } => {
            pipeline.remove_orphan_temp_files();
            import::import(&pipeline.open().await?, &files).await
        }
        Command::Redrive { pipeline, queue } => {
            redrive::redrive(&pipeline.open().await?, &queue).await
        }
        Command::Gen {
            events,
            batch_size,
            out,
            seed,
            days,
            types,
        } => {
            let generator = crate::generate::Generator::shaped(seed, events, days, &types)?;
            crate::generate::run(generator, events, batch_size, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact {
            pipeline,
            dry_run,
            all,
        } => compact::compact(&pipeline, dry_run, all).await,
        Command::Status { pipeline } => status::status(&pipeline.open().await?).await,
        Command::BenchWriter {
            data,
            batch_events,
            files,
        } => crate::bench::bench_writer(&data, batch_events.max(1), &files).await,
    }
}
