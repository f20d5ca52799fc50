//! `sparklake schema`: the output's columns typed for Athena.

use std::process::ExitCode;

/// `sparklake schema`: the columns every Parquet and CSV object has, typed for Athena, in file
/// order; the deploy template's Glue tables are tested against this.
pub fn schema(format: &str) -> anyhow::Result<ExitCode> {
    use sparklake_core::schema::{COLUMNS, athena_type};
    use std::io::Write as _;
    // writeln!, not println!: a closed pipe (`| head`) is an error to report, not a panic.
    let mut out = std::io::stdout().lock();
    match format {
        "json" => {
            let columns: Vec<serde_json::Value> = COLUMNS
                .iter()
                .map(|c| serde_json::json!({"Name": c.name, "Type": athena_type(c.kind)}))
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(columns))?;
        }
        "ddl" => {
            let lines: Vec<String> = COLUMNS
                .iter()
                .map(|c| format!("  `{}` {}", c.name, athena_type(c.kind)))
                .collect();
            writeln!(out, "{}", lines.join(",\n"))?;
        }
        other => anyhow::bail!("--format `{other}`: expected json or ddl"),
    }
    Ok(ExitCode::SUCCESS)
}
