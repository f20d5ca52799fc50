//! Every group's two objects (Parquet, CSV) encoded at once on the machine's cores (a Lambda
//! function gets more than one vCPU from 1,769 MB; locally, every core).

use sparklake_core::encode::{Backing, EncodeError, ParquetEncoder, encode_csv};
use sparklake_core::parallel::on_cores;
use sparklake_core::partition::Partition;

use crate::handler::Group;

/// One group's objects, encoded: (Parquet, CSV).
pub(crate) type Encoded = Result<(Vec<u8>, Vec<u8>), EncodeError>;

/// Encodes every group as (Parquet, CSV), the 2 × groups encodings spread over the machine's
/// cores (a Lambda function gets more than one vCPU from 1,769 MB; locally, every core).
/// `backing` holds the buffers the rows' text lies in (the messages' bodies).
pub(crate) fn encode_all(
    parquet: &ParquetEncoder,
    groups: &[(Partition<'_>, Group<'_>)],
    backing: &Backing,
) -> Vec<Encoded> {
    let done = on_cores(groups.len() * 2, usize::MAX, |job| {
        let rows = &groups[job / 2].1.rows;
        if job.is_multiple_of(2) {
            parquet.encode_backed(rows, backing)
        } else {
            encode_csv(rows)
        }
    });
    let mut bodies = done.into_iter();
    let mut pairs = Vec::with_capacity(groups.len());
    while let (Some(parquet), Some(csv)) = (bodies.next(), bodies.next()) {
        pairs.push(parquet.and_then(|p| csv.map(|c| (p, c))));
    }
    pairs
}
