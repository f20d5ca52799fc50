//! `sparklake redrive`: dead letters back to their source queues.

use std::process::ExitCode;

use crate::pipeline::Pipeline;

/// `sparklake redrive`.
pub async fn redrive(pipeline: &Pipeline, which: &str) -> anyhow::Result<ExitCode> {
    let queues = match which {
        "ingest" => vec![&pipeline.ingest_queue],
        "events" => vec![&pipeline.events_queue],
        "all" => vec![&pipeline.ingest_queue, &pipeline.events_queue],
        other => anyhow::bail!("--queue `{other}`: expected ingest, events or all"),
    };
    for queue in queues {
        // A closed stdout must not stop a redrive half way: its lines are dropped then.
        queue
            .redrive(&|line| {
                let _ = crate::stdout::line(format_args!("{line}"));
            })
            .await?;
    }
    Ok(ExitCode::SUCCESS)
}
