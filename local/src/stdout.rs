//! What commands print on stdout. `println!` panics when stdout is a closed pipe
//! (`sparklake status | head -4`); [`out!`](crate::out) returns the error instead, and `main`
//! ends quietly on a broken pipe (the reader has what it wanted).

use std::io::Write as _;

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether `error` is stdout's reader having gone away.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` for commands: a closed stdout is an error (`?`), not a panic.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))?
    };
}
