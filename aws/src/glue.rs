//! The Glue tables' `event_type` projection, kept in step with the types the writer writes.
//!
//! Athena finds the lake's partitions by partition projection: `event_type` is an `enum` over
//! the table parameter `projection.event_type.values`. A type missing there is stored but
//! invisible, so the writer adds each new type it writes, to every table, before its messages
//! are deleted. Updates use Glue's optimistic locking (`UpdateTable` with the `VersionId` that
//! `GetTable` returned): two writers adding different types at once both land, the loser of a
//! race re-reads and retries. What the tables already project is cached for
//! [`CACHE_TTL`], so a type costs one `GetTable` per table the first time a process writes it,
//! and a stack update that reset the parameter is repaired within that time.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_glue::operation::update_table::UpdateTableError;
use aws_sdk_glue::types::{Table, TableInput};
use sparklake_core::ports::{PortError, Projection, TypeCatalog};

/// The table parameter holding the projected types.
pub const VALUES_PARAMETER: &str = "projection.event_type.values";
const TYPE_PARAMETER: &str = "projection.event_type.type";
/// At most this many projected types per table: Athena recommends enums of "a few dozen" and a
/// table's metadata must stay under Glue's ~1 MB. Past it, new types are counted
/// `UnprojectedTypes` (an alarm) instead of added.
pub const MAX_PROJECTED_TYPES: usize = 1000;
/// How long what a table projects is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(600);
/// Attempts of a read-modify-write that loses optimistic-locking races.
const ATTEMPTS: u32 = 6;

/// What projecting `wanted` onto a table that projects `existing` (the parameter's text) takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Merge {
    /// The parameter's new text, when it changes.
    pub values: Option<String>,
    pub added: Vec<String>,
    pub unprojectable: Vec<String>,
}

/// Adds `wanted` to a comma-separated enum, keeping its order and appending in `wanted`'s
/// order. A value with a `,` cannot be an enum member; nor can any past `max` members. Athena
/// takes whitespace as part of a value, so values are compared exactly.
pub fn merge_values(existing: &str, wanted: &[String], max: usize) -> Merge {
    let mut values: Vec<&str> = existing.split(',').filter(|v| !v.is_empty()).collect();
    let present: BTreeSet<&str> = values.iter().copied().collect();
    let mut merge = Merge::default();
    for value in wanted {
        if present.contains(value.as_str()) || merge.added.contains(value) {
            continue;
        }
        if value.is_empty() || value.contains(',') || values.len() >= max {
            merge.unprojectable.push(value.clone());
            continue;
        }
        values.push(value);
        merge.added.push(value.clone());
    }
    if !merge.added.is_empty() {
        merge.values = Some(values.join(","));
    }
    merge
}

/// The tables of one Glue database whose projection the writer keeps in step.
pub struct GlueProjection {
    client: aws_sdk_glue::Client,
    database: String,
    tables: Vec<String>,
    /// What every table was last seen or made to project, and when it was read.
    known: Mutex<Option<(Instant, BTreeSet<String>)>>,
}

impl GlueProjection {
    pub fn new(client: aws_sdk_glue::Client, database: &str, tables: &[String]) -> Self {
        Self {
            client,
            database: database.to_owned(),
            tables: tables.to_vec(),
            known: Mutex::new(None),
        }
    }

    fn cached(&self) -> BTreeSet<String> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match &*known {
            Some((at, values)) if at.elapsed() < CACHE_TTL => values.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Trusts `values` as projected by every table from now on.
    fn remember(&self, values: BTreeSet<String>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *known {
            Some((at, set)) if at.elapsed() < CACHE_TTL => set.extend(values),
            _ => *known = Some((Instant::now(), values)),
        }
    }

    /// Projects `wanted` onto one table; returns what it added and what it could not, and
    /// every value the table now projects.
    async fn project_table(
        &self,
        table: &str,
        wanted: &[String],
    ) -> Result<(Merge, BTreeSet<String>), PortError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .client
                .get_table()
                .database_name(&self.database)
                .name(table)
                .send()
                .await
                .map_err(|e| PortError::new("glue GetTable", e))?
                .table
                .ok_or_else(|| PortError::new("glue GetTable", "no table in the answer"))?;
            let parameters = current.parameters.clone().unwrap_or_default();
            if parameters.get(TYPE_PARAMETER).map(String::as_str) != Some("enum") {
                // Not an enum projection (injected, or projection off): every type is visible.
                return Ok((Merge::default(), wanted.iter().cloned().collect()));
            }
            let existing = parameters
                .get(VALUES_PARAMETER)
                .cloned()
                .unwrap_or_default();
            let merge = merge_values(&existing, wanted, MAX_PROJECTED_TYPES);
            let projected = |merge: &Merge| -> BTreeSet<String> {
                existing
                    .split(',')
                    .map(str::to_owned)
                    .chain(merge.added.iter().cloned())
                    .collect()
            };
            let Some(values) = merge.values.clone() else {
                let now = projected(&merge);
                return Ok((merge, now));
            };
            let input =
                table_input(&current, values).map_err(|e| PortError::new("glue UpdateTable", e))?;
            let mut update = self
                .client
                .update_table()
                .database_name(&self.database)
                .table_input(input);
            if let Some(version) = &current.version_id {
                update = update.version_id(version);
            }
            match update.send().await {
                Ok(_) => {
                    let now = projected(&merge);
                    return Ok((merge, now));
                }
                Err(e)
                    if attempt < ATTEMPTS
                        && matches!(
                            e.as_service_error(),
                            Some(UpdateTableError::ConcurrentModificationException(_))
                        ) =>
                {
                    // Another writer updated the table since it was read: read it again.
                    tracing::info!(table, attempt, "table changed under the update; re-reading");
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
                Err(e) => return Err(PortError::new("glue UpdateTable", e)),
            }
        }
    }
}

#[async_trait]
impl TypeCatalog for GlueProjection {
    async fn ensure_projected(&self, values: &[String]) -> Result<Projection, PortError> {
        let known = self.cached();
        let wanted: Vec<String> = values
            .iter()
            .filter(|v| !known.contains(*v))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Ok(Projection::default());
        }
        let mut added = BTreeSet::new();
        let mut unprojectable = BTreeSet::new();
        // Trusted only once every table projects them: a failure part-way leaves the values to
        // be checked again on the next call.
        let mut everywhere: Option<BTreeSet<String>> = None;
        for table in &self.tables {
            let (merge, projected) = self.project_table(table, &wanted).await?;
            added.extend(merge.added);
            unprojectable.extend(merge.unprojectable);
            everywhere = Some(match everywhere {
                None => projected,
                Some(so_far) => so_far.intersection(&projected).cloned().collect(),
            });
        }
        self.remember(everywhere.unwrap_or_default());
        Ok(Projection {
            added: added.into_iter().collect(),
            unprojectable: unprojectable.into_iter().collect(),
        })
    }
}

/// The `TableInput` that re-states `table` with the projection's values set to `values`: every
/// field `UpdateTable` takes is carried over, so nothing else about the table changes.
fn table_input(
    table: &Table,
    values: String,
) -> Result<TableInput, aws_sdk_glue::error::BuildError> {
    let mut parameters = table.parameters.clone().unwrap_or_default();
    parameters.insert(VALUES_PARAMETER.to_owned(), values);
    TableInput::builder()
        .name(&table.name)
        .set_description(table.description.clone())
        .set_owner(table.owner.clone())
        .set_last_access_time(table.last_access_time)
        .set_last_analyzed_time(table.last_analyzed_time)
        .retention(table.retention)
        .set_storage_descriptor(table.storage_descriptor.clone())
        .set_partition_keys(table.partition_keys.clone())
        .set_view_original_text(table.view_original_text.clone())
        .set_view_expanded_text(table.view_expanded_text.clone())
        .set_table_type(table.table_type.clone())
        .set_parameters(Some(parameters))
        .set_target_table(table.target_table.clone())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn new_values_are_appended_once_in_order() {
        let merge = merge_values(
            "bounce,delivery",
            &strings(&["open", "bounce", "open", "click"]),
            10,
        );
        assert_eq!(merge.values.as_deref(), Some("bounce,delivery,open,click"));
        assert_eq!(merge.added, strings(&["open", "click"]));
        assert!(merge.unprojectable.is_empty());
    }

    #[test]
    fn nothing_changes_when_every_value_is_projected() {
        let merge = merge_values("bounce,delivery", &strings(&["delivery"]), 10);
        assert_eq!(merge, Merge::default());
        // An empty parameter is an empty enum.
        let merge = merge_values("", &strings(&["bounce"]), 10);
        assert_eq!(merge.values.as_deref(), Some("bounce"));
    }

    #[test]
    fn values_no_enum_can_hold_are_reported_not_added() {
        let merge = merge_values("a", &strings(&["c,d", "", "b", "e", "f"]), 3);
        assert_eq!(merge.values.as_deref(), Some("a,b,e"));
        assert_eq!(merge.added, strings(&["b", "e"]));
        assert_eq!(merge.unprojectable, strings(&["c,d", "", "f"]));
        // Whitespace is part of a value (Athena), so a value is compared exactly.
        let merge = merge_values("type with space", &strings(&["type with space", " x"]), 10);
        assert_eq!(merge.added, strings(&[" x"]));
    }
}
