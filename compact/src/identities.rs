//! The identities of an object at target size, which a job must not write again: from the
//! sidecar the compactor stored beside it (16 bytes a row), else from its identity columns.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read as _;

use sparklake_core::partition::Format;
use sparklake_core::ports::{LakeStore, ObjectInfo};

use crate::rows;
use crate::run::{CompactError, STATE_PREFIX, blocking};

/// The identity sidecar of an object the compactor wrote at target size.
pub fn sidecar_key(key: &str) -> String {
    format!("{STATE_PREFIX}/identities/{key}.ids")
}

/// Adds the identities of `object` to `seen`.
pub async fn read(
    store: &dyn LakeStore,
    format: Format,
    object: &ObjectInfo,
    seen: &mut HashSet<u128>,
) -> Result<(), CompactError> {
    if let Some(file) = store.open(&sidecar_key(&object.key)).await?
        && let Some(ids) = blocking(move || read_sidecar(file)).await?
    {
        seen.extend(ids);
        return Ok(());
    }
    let Some(file) = store.open(&object.key).await? else {
        return Ok(());
    };
    let ids = blocking(move || {
        let mut ids = Vec::new();
        let mut push = |id| ids.push(id);
        match format {
            Format::Parquet => rows::parquet_identities(file, &mut push),
            Format::Csv => rows::csv_identities(file, &mut push),
        }
        .map(|_| ids)
    })
    .await?
    .map_err(|source| CompactError::Read {
        key: object.key.clone(),
        source,
    })?;
    seen.extend(ids);
    Ok(())
}

/// A sidecar's identities; `None` if it is not a whole number of them (then the object is read).
fn read_sidecar(mut file: File) -> Option<Vec<u128>> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    if bytes.len() % 16 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(16)
            .map(|c| u128::from_be_bytes(c.try_into().unwrap_or([0; 16])))
            .collect(),
    )
}
