//! One job's merge: the inputs' rows in timestamp order (each input is sorted, so a k-way merge
//! streams), each identity once, into outputs closed as they reach the target size. Synchronous
//! and CPU-bound: [`crate::run`] runs it on a blocking thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sparklake_core::encode::{CsvStream, EncodeError, ParquetEncoder, ParquetStream};
use sparklake_core::event::Event;
use sparklake_core::partition::Format;
use sparklake_core::schema::Row;

use crate::rows::{ReadError, Rows, StoredRow};

/// Rows buffered before they are encoded, by [`StoredRow::weight`]: one Parquet row group (about
/// a third of it once compressed), or one CSV write. Bounds the memory of the output side.
pub const PARQUET_ROW_GROUP_WEIGHT: usize = 24 * 1024 * 1024;
pub const CSV_CHUNK_WEIGHT: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("writing a temporary file: {0}")]
    Io(#[from] std::io::Error),
    #[error("a stored row's raw event cannot be read again: {0}")]
    Unreadable(String),
}

/// One output, complete in a temporary file.
#[derive(Debug)]
pub struct Output {
    /// The object's file.
    pub path: PathBuf,
    /// Its rows' identities, 16 bytes each (the sidecar of an output at target size).
    pub identities: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

/// What a merge did.
#[derive(Debug, Default)]
pub struct Merged {
    pub outputs: Vec<Output>,
    pub rows_in: u64,
    pub duplicates: u64,
}

/// Where outputs are written and how large they grow.
pub struct Outputs<'a> {
    pub format: Format,
    pub parquet: &'a ParquetEncoder,
    pub target_bytes: u64,
    /// The folder outputs are written in (`<n>.out`, and `<n>.ids` for their identities).
    pub scratch: &'a Path,
}

/// Merges `inputs` into outputs, skipping every identity already in `seen` (the partition's
/// objects at target size) and every one seen before in the merge, keeping the first.
pub fn merge(
    mut inputs: Vec<Rows>,
    seen: &mut HashSet<u128>,
    outputs: &Outputs<'_>,
) -> Result<Merged, MergeError> {
    let mut heads: Vec<Option<StoredRow>> = Vec::with_capacity(inputs.len());
    let mut heap = BinaryHeap::new();
    for (i, rows) in inputs.iter_mut().enumerate() {
        let head = rows.next().transpose()?;
        if let Some(row) = &head {
            heap.push(Reverse((row.order(), i)));
        }
        heads.push(head);
    }
    let mut merged = Merged::default();
    let mut sink: Option<Sink> = None;
    let mut buffer: Vec<StoredRow> = Vec::new();
    let mut weight = 0usize;
    let chunk = match outputs.format {
        Format::Parquet => PARQUET_ROW_GROUP_WEIGHT,
        Format::Csv => CSV_CHUNK_WEIGHT,
    };
    while let Some(Reverse((_, i))) = heap.pop() {
        let Some(row) = heads[i].take() else { continue };
        if let Some(next) = inputs[i].next().transpose()? {
            heap.push(Reverse((next.order(), i)));
            heads[i] = Some(next);
        }
        merged.rows_in += 1;
        if !seen.insert(row.identity) {
            merged.duplicates += 1;
            continue;
        }
        weight += row.weight();
        buffer.push(row);
        if weight >= chunk {
            write_chunk(&mut sink, &mut buffer, outputs, &mut merged)?;
            weight = 0;
        }
    }
    if !buffer.is_empty() {
        write_chunk(&mut sink, &mut buffer, outputs, &mut merged)?;
    }
    if let Some(sink) = sink {
        merged.outputs.push(sink.finish()?);
    }
    Ok(merged)
}

/// Writes the buffered rows to the current output (opening one if none is open) and closes it
/// once it has reached the target size.
fn write_chunk(
    sink: &mut Option<Sink>,
    buffer: &mut Vec<StoredRow>,
    outputs: &Outputs<'_>,
    merged: &mut Merged,
) -> Result<(), MergeError> {
    let open = match sink {
        Some(open) => open,
        None => {
            let n = merged.outputs.len();
            let (path, identities) = (
                outputs.scratch.join(format!("{n}.out")),
                outputs.scratch.join(format!("{n}.ids")),
            );
            sink.insert(Sink::create(outputs, path, identities)?)
        }
    };
    open.write(buffer)?;
    buffer.clear();
    if open.bytes()? >= outputs.target_bytes
        && let Some(full) = sink.take()
    {
        merged.outputs.push(full.finish()?);
    }
    Ok(())
}

/// A counting writer: how many bytes went through.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder {
    Parquet(ParquetStream<BufWriter<File>>),
    Csv(CsvStream<Counted<BufWriter<File>>>),
}

/// One output being written: its encoder and its identities file.
struct Sink {
    encoder: Encoder,
    identities: BufWriter<File>,
    path: PathBuf,
    identities_path: PathBuf,
    rows: u64,
}

impl Sink {
    fn create(
        outputs: &Outputs<'_>,
        path: PathBuf,
        identities_path: PathBuf,
    ) -> Result<Self, MergeError> {
        let file = BufWriter::with_capacity(1024 * 1024, File::create(&path)?);
        let encoder = match outputs.format {
            Format::Parquet => Encoder::Parquet(outputs.parquet.stream(file)?),
            Format::Csv => Encoder::Csv(CsvStream::new(Counted {
                inner: file,
                bytes: 0,
            })?),
        };
        Ok(Self {
            encoder,
            identities: BufWriter::new(File::create(&identities_path)?),
            path,
            identities_path,
            rows: 0,
        })
    }

    fn write(&mut self, stored: &[StoredRow]) -> Result<(), MergeError> {
        let mut rows = Vec::with_capacity(stored.len());
        for s in stored {
            let event = match Event::parse(&s.raw) {
                Ok(Some(event)) => event,
                Ok(None) => return Err(MergeError::Unreadable("an empty element".into())),
                Err(e) => return Err(MergeError::Unreadable(e.to_string())),
            };
            rows.push(Row {
                event,
                batch_id: s.batch_id.as_deref(),
                received_at: s.received_at,
                timestamp_implausible: s.timestamp_implausible,
            });
            self.identities.write_all(&s.identity.to_be_bytes())?;
        }
        match &mut self.encoder {
            Encoder::Parquet(p) => p.write_row_group(&rows)?,
            Encoder::Csv(c) => c.write_rows(&rows)?,
        }
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Bytes in the output so far.
    fn bytes(&mut self) -> Result<u64, MergeError> {
        Ok(match &mut self.encoder {
            Encoder::Parquet(p) => p.bytes_written() as u64,
            Encoder::Csv(c) => c.flushed()?.bytes,
        })
    }

    /// Completes the output: footer written, everything flushed (storing it makes it durable:
    /// locally `put_file` fsyncs before its rename; S3 needs no local fsync).
    fn finish(self) -> Result<Output, MergeError> {
        let file = match self.encoder {
            Encoder::Parquet(p) => p.finish()?,
            Encoder::Csv(c) => c.finish()?.inner,
        };
        let file = file.into_inner().map_err(|e| e.into_error())?;
        let bytes = file.metadata()?.len();
        self.identities.into_inner().map_err(|e| e.into_error())?;
        Ok(Output {
            path: self.path,
            identities: self.identities_path,
            rows: self.rows,
            bytes,
        })
    }
}
