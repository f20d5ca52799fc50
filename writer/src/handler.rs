//! The writer handler: a batch of queue messages in, one Parquet and one CSV object per (event
//! type, UTC date) out, named from the messages they hold.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use sparklake_core::encode::{Backing, EncodeError, ParquetEncoder};

use crate::encode::{Encoded, encode_all};
use sparklake_core::envelope::ValidationError;
use sparklake_core::event::read_events;
use sparklake_core::message::{InboundMessage, attr};
use sparklake_core::metrics::Metrics;
use sparklake_core::parallel::on_cores;
use sparklake_core::partition::{Format, Partition, content_name, object_key_within, path_value};
use sparklake_core::ports::{ObjectPut, PortError, PutObject, TypeCatalog};
use sparklake_core::schema::{Row, TimestampPolicy};
use tracing::{error, info, info_span, warn};

/// The writer handler over its port.
pub struct Writer<'a> {
    pub store: &'a dyn ObjectPut,
    pub parquet: &'a ParquetEncoder,
    /// Which event timestamps may place an event (the rest go under their receive date).
    pub timestamps: TimestampPolicy,
    /// The tables' catalog, told of every event type written (AWS: the Glue tables' projection);
    /// `None` where readers list folders (DuckDB, Spark's MSCK).
    pub catalog: Option<&'a dyn TypeCatalog>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Shown without text quoted from the payload (logs carry it).
    #[error("message body is not a SparkPost batch: {}", .0.redacted())]
    Undecodable(#[from] ValidationError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What a call did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows written (after de-duplication).
    pub rows: usize,
    /// Duplicates dropped within the batch.
    pub duplicates: usize,
    /// Object keys written.
    pub objects: Vec<String>,
    /// The pipeline's numbers for this call.
    pub metrics: Metrics,
    /// Ids of the messages that failed.
    pub failed: Vec<String>,
}

/// A partition's rows: references to the rows where the parse left them (a row is ~1.7 KB;
/// grouping and sorting move 8-byte references instead).
pub(crate) struct Group<'a> {
    pub(crate) rows: Vec<&'a Row<'a>>,
    pub(crate) message_ids: BTreeSet<&'a str>,
}

impl Writer<'_> {
    /// Writes a batch of messages; `now` (unix ms) stands in for a missing receive time.
    pub async fn handle(&self, messages: &[InboundMessage], now: i64) -> Outcome {
        let mut outcome = Outcome::default();
        let read = self.read(messages, now);
        let groups = group(messages, &read, &mut outcome);
        let backing = Backing::new(messages.iter().map(|m| m.body.clone()));
        let encoded = encode_all(self.parquet, &groups, &backing);
        let results = self.store_groups(&groups, encoded).await;
        let mut failed: BTreeSet<&str> = BTreeSet::new();
        let mut written: Vec<&(Partition<'_>, Group<'_>)> = Vec::new();
        for (entry, result) in groups.iter().zip(results) {
            let (partition, group) = entry;
            match result {
                Ok(keys) => {
                    written.push(entry);
                    record_written(partition, group, keys, &mut outcome);
                }
                Err(e) => {
                    error!(event_type = %partition.event_type, dt = %partition.dt, error = %e, "write failed; its messages will be retried");
                    failed.extend(group.message_ids.iter().copied());
                }
            }
        }
        if let Some(catalog) = self.catalog {
            self.project(catalog, &written, &mut outcome.metrics, &mut failed)
                .await;
        }
        outcome.failed.extend(failed.into_iter().map(str::to_owned));
        finish(messages, &mut outcome);
        outcome
    }

    /// The rows of every message, read on every core a few messages at a time (each is a
    /// fanout message of one type, tens to hundreds of events), in message order.
    fn read<'m>(
        &self,
        messages: &'m [InboundMessage],
        now: i64,
    ) -> Vec<Result<Vec<Row<'m>>, WriteError>> {
        let chunks: Vec<&[InboundMessage]> = messages.chunks(PARSE_CHUNK).collect();
        on_cores(chunks.len(), usize::MAX, |chunk| {
            chunks[chunk]
                .iter()
                .map(|m| read_rows(m, now, &self.timestamps))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// Stores every group's objects, the keys written per group or why not. Each format in
    /// one [`ObjectPut::put_all`] (a folder makes a call's objects durable together, S3 takes
    /// them several at a time): the Parquet objects first, then the CSV objects of the groups
    /// whose Parquet was stored, so a group that fails leaves no CSV object of its own.
    async fn store_groups(
        &self,
        groups: &[(Partition<'_>, Group<'_>)],
        encoded: Vec<Encoded>,
    ) -> Vec<Result<Vec<String>, WriteError>> {
        let max = self.store.max_partition_value_bytes();
        let mut results: Vec<Result<Vec<String>, WriteError>> = Vec::with_capacity(groups.len());
        let mut csv_bodies: Vec<Option<Vec<u8>>> = Vec::with_capacity(groups.len());
        let mut names = Vec::with_capacity(groups.len());
        for ((partition, group), bodies) in groups.iter().zip(encoded) {
            let name = content_name(group.message_ids.iter().copied());
            match bodies {
                Ok((parquet, csv)) => {
                    let key = object_key_within(Format::Parquet, partition, &name, max);
                    results.push(Ok(vec![key]));
                    csv_bodies.push(Some(csv));
                    names.push((name, Some(parquet)));
                }
                Err(e) => {
                    results.push(Err(e.into()));
                    csv_bodies.push(None);
                    names.push((name, None));
                }
            }
        }
        for format in [Format::Parquet, Format::Csv] {
            let mut objects = Vec::new();
            let mut owners = Vec::new();
            for (at, ((partition, _), result)) in groups.iter().zip(&results).enumerate() {
                if result.is_err() {
                    continue;
                }
                let body = match format {
                    Format::Parquet => names[at].1.take(),
                    Format::Csv => csv_bodies[at].take(),
                };
                let Some(body) = body else { continue };
                objects.push(PutObject {
                    key: object_key_within(format, partition, &names[at].0, max),
                    body: Bytes::from(body),
                    content_type: format.content_type(),
                });
                owners.push(at);
            }
            let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
            let mut stored = self.store.put_all(objects).await.into_iter();
            for (at, key) in owners.into_iter().zip(keys) {
                let (partition, group) = &groups[at];
                match stored.next().unwrap_or_else(|| {
                    Err(PortError::new(
                        "object put",
                        std::io::Error::other(
                            "the store answered for fewer objects than it was given",
                        ),
                    ))
                }) {
                    Ok(()) => {
                        info!(event_type = %partition.event_type, dt = %partition.dt, rows = group.rows.len(), key = %key, "wrote object");
                        if let Ok(keys) = &mut results[at]
                            && format == Format::Csv
                        {
                            keys.push(key);
                        }
                    }
                    Err(e) => results[at] = Err(e.into()),
                }
            }
        }
        results
    }

    /// Tells the catalog of the types just written. Until it has them their rows are stored
    /// but invisible through the tables, so a catalog failure fails the groups' messages: the
    /// retry rewrites the same objects and asks again, and a message is only ever deleted once
    /// its rows can be read.
    async fn project<'g>(
        &self,
        catalog: &dyn TypeCatalog,
        written: &[&'g (Partition<'g>, Group<'g>)],
        metrics: &mut Metrics,
        failed: &mut BTreeSet<&'g str>,
    ) {
        let max = self.store.max_partition_value_bytes();
        let values: BTreeSet<String> = written
            .iter()
            .map(|(p, _)| path_value(&p.event_type, max).into_owned())
            .collect();
        if values.is_empty() {
            return;
        }
        let values: Vec<String> = values.into_iter().collect();
        match catalog.ensure_projected(&values).await {
            Ok(projection) => {
                metrics.projection_types_added += projection.added.len() as u64;
                metrics.unprojected_types += projection.unprojectable.len() as u64;
                for value in &projection.added {
                    info!(event_type = %value, "added the event type to the tables' projection");
                }
                for value in &projection.unprojectable {
                    warn!(event_type = %value, "event type written but no projection can hold it: its rows are invisible to the tables");
                }
            }
            Err(e) => {
                error!(error = %e, types = values.len(), "could not update the tables' projection; the messages will be retried");
                for (_, group) in written {
                    failed.extend(group.message_ids.iter().copied());
                }
            }
        }
    }
}

/// The rows of every readable message grouped by partition, each identity once, each group
/// in time order; unreadable messages and duplicates are counted in `outcome`.
fn group<'a>(
    messages: &'a [InboundMessage],
    read: &'a [Result<Vec<Row<'a>>, WriteError>],
    outcome: &mut Outcome,
) -> Vec<(Partition<'a>, Group<'a>)> {
    // Seeded per process (foldhash's RandomState): SipHash's strength is not needed for one
    // call's ids, and the hashing was a percent of the writer's CPU.
    let mut seen = HashSet::with_hasher(foldhash::fast::RandomState::default());
    let mut groups: BTreeMap<Partition<'_>, Group<'_>> = BTreeMap::new();
    for (message, rows) in messages.iter().zip(read) {
        let span = info_span!("message", id = %message.id, receive_count = message.receive_count);
        let _entered = span.enter();
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                error!(id = %message.id, error = %e, "unreadable message; it will be retried, then dead-lettered");
                outcome.failed.push(message.id.clone());
                continue;
            }
        };
        for row in rows {
            if !seen.insert(row.event.identity()) {
                outcome.duplicates += 1;
                continue;
            }
            let group = groups.entry(row.partition()).or_insert_with(|| Group {
                rows: Vec::new(),
                message_ids: BTreeSet::new(),
            });
            group.message_ids.insert(&message.id);
            group.rows.push(row);
        }
    }
    let mut groups: Vec<(Partition<'_>, Group<'_>)> = groups.into_iter().collect();
    for (_, group) in &mut groups {
        // Rows in time order: the timestamp column and the row statistics compress and
        // prune better, and neighbouring events (one send's deliveries, opens) share text.
        group.rows.sort_by_key(|r| r.event.timestamp_millis());
    }
    groups
}

/// Counts a group whose objects were stored.
fn record_written(
    partition: &Partition<'_>,
    group: &Group<'_>,
    keys: Vec<String>,
    outcome: &mut Outcome,
) {
    outcome.rows += group.rows.len();
    // Both objects of a group hold the same rows; count the group once.
    outcome
        .metrics
        .rows_per_object
        .push(group.rows.len() as u64);
    let oldest = group
        .rows
        .iter()
        .filter_map(|r| r.event.timestamp_millis())
        .min();
    outcome.metrics.merge(&Metrics {
        oldest_event_millis: oldest,
        ..Metrics::default()
    });
    // Every row of a group is of the partition's type.
    outcome
        .metrics
        .add_events(&partition.event_type, group.rows.len() as u64);
    outcome.objects.extend(keys);
}

/// The call's totals, and its log line.
fn finish(messages: &[InboundMessage], outcome: &mut Outcome) {
    if outcome.duplicates > 0 {
        warn!(
            duplicates = outcome.duplicates,
            "dropped duplicate events within the batch"
        );
    }
    outcome.metrics.batches = messages.len() as u64;
    outcome.metrics.bytes = messages.iter().map(|m| m.body.len() as u64).sum();
    outcome.metrics.failures = outcome.failed.len() as u64;
    info!(
        messages = messages.len(),
        rows = outcome.rows,
        objects = outcome.objects.len(),
        failed = outcome.failed.len(),
        "writer batch done"
    );
}

/// Messages read per job of the parse: enough to outweigh handing the job to a thread.
const PARSE_CHUNK: usize = 16;

/// The rows of one message, with its batch context. Each element is read once, head and fields
/// together ([`sparklake_core::event::read_events`]); a message that is not a SparkPost batch
/// fails with the error [`sparklake_core::envelope::validate`] gives it.
fn read_rows<'m>(
    message: &'m InboundMessage,
    now: i64,
    policy: &TimestampPolicy,
) -> Result<Vec<Row<'m>>, WriteError> {
    let batch_id = message.attribute(attr::BATCH_ID);
    let received_at = message.received_at_millis().unwrap_or(now);
    Ok(read_events(&message.body, |event| {
        Row::new(event, batch_id, received_at, policy)
    })?)
}
