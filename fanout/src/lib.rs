//! fanout: splits each enqueued batch by event type and sends the events onward.
//!
//! Every event goes to the writer's queue, in messages that each hold events of one type (the
//! type is also an attribute); events of configured types also go to extra routes (for example
//! bounces and unsubscribes to a queue that maintains a suppression list); every event is appended
//! to the raw archive when one is configured. Failures are per message: one bad message never
//! fails its neighbours.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use sparklake_core::envelope::{self, ValidationError};
use sparklake_core::message::{Attributes, InboundMessage, OutboundMessage, attr};
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{ArchiveAppend, PortError, QueueSend};
use tracing::{Instrument as _, error, info, info_span};

/// Events of some types, also sent to another queue.
pub struct Route<'a> {
    pub name: String,
    pub event_types: BTreeSet<String>,
    pub queue: &'a dyn QueueSend,
}

/// The fanout handler over its ports.
pub struct Fanout<'a> {
    pub events: &'a dyn QueueSend,
    pub routes: &'a [Route<'a>],
    pub archive: Option<&'a dyn ArchiveAppend>,
}

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The message is not a batch at all; retrying will not help, so it ends in the DLQ.
    /// Shown without text quoted from the payload (logs carry it).
    #[error("message body is not a SparkPost batch: {}", .0.redacted())]
    Undecodable(#[from] ValidationError),
    #[error(transparent)]
    TooLarge(#[from] envelope::ElementTooLarge),
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What a call did: the ids of the messages that failed (to report as batch item failures).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub events: usize,
    /// The pipeline's numbers for this call.
    pub metrics: Metrics,
    pub failed: Vec<String>,
}

impl Fanout<'_> {
    pub async fn handle(&self, messages: &[InboundMessage]) -> Outcome {
        let mut outcome = Outcome::default();
        for message in messages {
            let span =
                info_span!("message", id = %message.id, receive_count = message.receive_count);
            match self.route_one(message).instrument(span.clone()).await {
                Ok(by_type) => {
                    for (event_type, n) in by_type {
                        outcome.events += n;
                        outcome.metrics.add_events(&event_type, n as u64);
                    }
                }
                Err(e) => {
                    span.in_scope(|| error!(error = %e, "fanout failed; message will be retried"));
                    outcome.failed.push(message.id.clone());
                }
            }
        }
        outcome.metrics.batches = messages.len() as u64;
        outcome.metrics.bytes = messages.iter().map(|m| m.body.len() as u64).sum();
        outcome.metrics.failures = outcome.failed.len() as u64;
        info!(
            messages = messages.len(),
            events = outcome.events,
            failed = outcome.failed.len(),
            "fanout batch done"
        );
        outcome
    }

    async fn route_one(
        &self,
        message: &InboundMessage,
    ) -> Result<BTreeMap<String, usize>, FanoutError> {
        let batch = envelope::validate(&message.body)?;
        let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (element, head) in batch.events() {
            by_type
                .entry(&head.event_type)
                .or_default()
                .push(element.raw);
        }
        let events: usize = by_type.values().map(Vec::len).sum();
        if events == 0 {
            return Ok(BTreeMap::new());
        }

        let mut context = Attributes::new();
        for name in [attr::BATCH_ID, attr::RECEIVED_AT] {
            if let Some(value) = message.attribute(name) {
                context.insert(name.to_owned(), value.to_owned());
            }
        }
        // Each queue gets parts packed to its own size limit.
        let pack = |queue: &dyn QueueSend, types: Option<&BTreeSet<String>>| {
            let mut out = Vec::new();
            for (event_type, raws) in &by_type {
                if types.is_some_and(|t| !t.contains(*event_type)) {
                    continue;
                }
                let mut attributes = context.clone();
                attributes.insert(attr::EVENT_TYPE.to_owned(), (*event_type).to_owned());
                for part in envelope::split(raws, queue.max_message_bytes())? {
                    out.push(OutboundMessage {
                        body: Bytes::from(part),
                        attributes: attributes.clone(),
                    });
                }
            }
            Ok::<_, envelope::ElementTooLarge>(out)
        };
        let to_writer = pack(self.events, None)?;
        let per_route = self
            .routes
            .iter()
            .map(|route| pack(route.queue, Some(&route.event_types)))
            .collect::<Result<Vec<_>, _>>()?;

        if let Some(archive) = self.archive {
            let records = batch
                .events()
                .map(|(e, _)| Bytes::from(envelope::compact(e.raw).into_owned()))
                .collect();
            archive.append(records).await?;
        }
        for (route, messages) in self.routes.iter().zip(per_route) {
            if !messages.is_empty() {
                route.queue.send(messages).await?;
                info!(route = %route.name, "routed");
            }
        }
        self.events.send(to_writer).await?;
        info!(events, types = by_type.len(), "fanned out");
        Ok(by_type
            .into_iter()
            .map(|(t, raws)| (t.to_owned(), raws.len()))
            .collect())
    }
}
