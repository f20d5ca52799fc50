//! The configuration as users see it: every flag and variable the code reads is in the README's
//! configuration table (with its flag where it has one) and every variable there is read, and
//! each flag applies on both backends (`--route` on aws was once silently ignored).

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use sparklake::cli::{Cli, Command};

/// The configuration table: variable → the flags in its row (several variables may share a row).
fn readme_table() -> BTreeMap<String, BTreeSet<String>> {
    let readme = include_str!("../../README.md");
    let table = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Configuration section");
    let mut out = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let flags: BTreeSet<String> = ticked(cells[1])
            .into_iter()
            .filter_map(|f| f.split_whitespace().next().map(str::to_owned))
            .filter(|f| f.starts_with("--"))
            .collect();
        for variable in ticked(cells[0]) {
            if variable.starts_with("SPARKLAKE_") {
                out.insert(variable, flags.clone());
            }
        }
    }
    out
}

/// Every (variable, flag) the command line reads.
fn clap_variables() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let root = Cli::command();
    let mut commands = vec![&root];
    commands.extend(root.get_subcommands());
    for command in commands {
        for arg in command.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                out.insert(env.to_string_lossy().into_owned(), format!("--{long}"));
            }
        }
    }
    out
}

/// The variables read without a flag, as each reader lists them.
fn lookup_variables() -> BTreeSet<String> {
    ingest::config::VARIABLES
        .iter()
        .chain(sparklake_aws::config::VARIABLES)
        .chain(sparklake_core::output::VARIABLES)
        .chain(sparklake::app::VARIABLES)
        .chain(sparklake::app::SERVER_VARIABLES)
        .chain(compact::policy::VARIABLES)
        .chain([
            &ingest::config::SECRET_ARN_VARIABLE,
            &sparklake::logging::VARIABLE,
            &sparklake_aws::METRICS_NAMESPACE_VARIABLE,
        ])
        .map(|v| (*v).to_owned())
        .collect()
}

#[test]
fn the_readme_table_is_every_variable_and_flag_the_code_reads() {
    let table = readme_table();
    let flags = clap_variables();
    for (variable, flag) in &flags {
        let row = table
            .get(variable)
            .unwrap_or_else(|| panic!("{variable} ({flag}) is not in the README's table"));
        assert!(
            row.contains(flag),
            "{variable}: README names {row:?}, not {flag}"
        );
    }
    let read: BTreeSet<String> = flags.keys().cloned().chain(lookup_variables()).collect();
    for variable in table.keys() {
        assert!(
            read.contains(variable),
            "README lists {variable}, which nothing reads"
        );
    }
    for variable in &read {
        assert!(
            table.contains_key(variable),
            "{variable} is read but not in the README's table"
        );
    }
}

fn pipeline_args(args: &[&str]) -> sparklake::cli::PipelineArgs {
    let cli = Cli::try_parse_from(args).expect("parses");
    match cli.command {
        Command::Serve { pipeline, .. } => pipeline,
        _ => unreachable!("a serve command line"),
    }
}

#[test]
fn routes_and_other_flags_apply_on_the_aws_backend_too() {
    let args = pipeline_args(&[
        "sparklake",
        "serve",
        "--backend",
        "aws",
        "--route",
        "suppression=bounce,spam_complaint",
        "--bucket",
        "from-the-flag",
        "--partition-value-max-bytes",
        "64",
        "--max-message-bytes",
        "262144",
    ]);
    // Variables without a flag come from the environment (here, a map).
    let env = |name: &str| {
        (name == "SPARKLAKE_ROUTE_SUPPRESSION_QUEUE_URL").then(|| "https://sqs/suppress".to_owned())
    };
    let aws = args.aws_settings(env).expect("settings");
    assert_eq!(aws.routes.len(), 1);
    assert_eq!(aws.routes[0].name, "suppression");
    assert_eq!(aws.routes[0].queue_url, "https://sqs/suppress");
    assert_eq!(
        aws.routes[0].event_types,
        ["bounce", "spam_complaint"].map(str::to_owned).into()
    );
    assert_eq!(aws.bucket.as_deref(), Some("from-the-flag"));
    assert_eq!(aws.partition_value_max_bytes, Some(64));
    assert_eq!(aws.max_message_bytes, 262_144);
    // The same flags make the local settings.
    let local = args.settings().expect("settings");
    assert_eq!(local.routes.len(), 1);
    assert_eq!(local.partition_value_max_bytes, Some(64));
    // A route without its queue URL on aws is an error, not a route dropped.
    assert!(args.aws_settings(|_| None).is_err());
}
