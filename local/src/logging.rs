//! Logs to stderr, text or JSON, filtered by `SPARKLAKE_LOG`.

/// The log filter's variable (the README's configuration table is tested against it).
pub const VARIABLE: &str = "SPARKLAKE_LOG";

/// Logs to stderr: `text` or `json`, filtered by `SPARKLAKE_LOG` (else `default_level`).
pub fn init_logging(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(VARIABLE)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is dropped. With
    // the default, tracing reports it with `eprintln!`, which panics on the same error and takes
    // down the worker that logged: serve then answers webhooks while nothing drains the queues.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
