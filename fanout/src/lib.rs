//! fanout: splits each enqueued batch by event type and sends the events onward.
//!
//! Every event goes to the writer's queue, in messages that each hold events of one type (the
//! type is also an attribute); events of configured types also go to extra routes (for example
//! bounces and unsubscribes to a queue that maintains a suppression list); every event is appended
//! to the raw archive when one is configured. A bad message (one that is not a batch, or holds an
//! element too large for any queue message) fails alone, never its neighbours. What the call's
//! good messages produce is sent together, so that a call costs one archive append and one send
//! per queue (locally one transaction and one sync each, on AWS full request batches); a send
//! that fails fails every message of the call, and all are retried.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use sparklake_core::envelope::{self, Outline, ValidationError};
use sparklake_core::message::{Attributes, InboundMessage, OutboundMessage, attr};
use sparklake_core::metrics::Metrics;
use sparklake_core::ports::{ArchiveAppend, PortError, QueueSend};
use tracing::{error, info, info_span};

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

/// One message read and split, ready to send.
struct Routed {
    /// Events per type.
    by_type: BTreeMap<String, usize>,
    to_writer: Vec<OutboundMessage>,
    /// One list per route, in the order of [`Fanout::routes`].
    per_route: Vec<Vec<OutboundMessage>>,
    /// The archive's records: every event, compact.
    records: Vec<Bytes>,
}

impl Fanout<'_> {
    /// Reads and splits every message, then sends what all of them produced together: one
    /// archive append, one send per route and one to the writer's queue for the whole call
    /// (locally each is one transaction and one sync; on AWS, full batches per request). A
    /// message that cannot be read or split fails alone; a send that fails fails every message
    /// it carried, and all are retried.
    pub async fn handle(&self, messages: &[InboundMessage]) -> Outcome {
        self.handle_outlined(messages, &[]).await
    }

    /// [`Self::handle`], `outlines[i]` the outline of `messages[i]`'s body when the stage before
    /// validated it in this process (`import`): that body is not walked again. A message
    /// without one, or whose outline does not fit its body, is validated as always.
    pub async fn handle_outlined(
        &self,
        messages: &[InboundMessage],
        outlines: &[Option<Arc<Outline>>],
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let mut routed: Vec<(&InboundMessage, tracing::Span, Routed)> = Vec::new();
        for (at, message) in messages.iter().enumerate() {
            let span =
                info_span!("message", id = %message.id, receive_count = message.receive_count);
            let outline = outlines.get(at).and_then(Option::as_deref);
            match span.in_scope(|| self.route_one(message, outline)) {
                Ok(r) if r.by_type.is_empty() => {}
                Ok(r) => routed.push((message, span, r)),
                Err(e) => {
                    span.in_scope(|| error!(error = %e, "fanout failed; message will be retried"));
                    outcome.failed.push(message.id.clone());
                }
            }
        }
        match self.send_all(&mut routed).await {
            Ok(()) => {
                for (_, span, r) in &routed {
                    let events: usize = r.by_type.values().sum();
                    span.in_scope(|| info!(events, types = r.by_type.len(), "fanned out"));
                    for (event_type, n) in &r.by_type {
                        outcome.events += n;
                        outcome.metrics.add_events(event_type, *n as u64);
                    }
                }
            }
            Err(e) => {
                for (message, span, _) in &routed {
                    span.in_scope(|| error!(error = %e, "fanout failed; message will be retried"));
                    outcome.failed.push(message.id.clone());
                }
                // In the order of the messages, as they came.
                let order: BTreeMap<&str, usize> = messages
                    .iter()
                    .enumerate()
                    .map(|(at, m)| (m.id.as_str(), at))
                    .collect();
                outcome
                    .failed
                    .sort_by_key(|id| order.get(id.as_str()).copied());
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

    /// The archive first, then the routes, then the writer's queue: a message is only done
    /// once its events are on their way to the lake.
    async fn send_all(
        &self,
        routed: &mut [(&InboundMessage, tracing::Span, Routed)],
    ) -> Result<(), FanoutError> {
        if routed.is_empty() {
            return Ok(());
        }
        if let Some(archive) = self.archive {
            let batches = routed
                .iter_mut()
                .map(|(_, _, r)| std::mem::take(&mut r.records))
                .collect();
            archive.append_all(batches).await?;
        }
        for (at, route) in self.routes.iter().enumerate() {
            let messages: Vec<OutboundMessage> = routed
                .iter_mut()
                .flat_map(|(_, _, r)| std::mem::take(&mut r.per_route[at]))
                .collect();
            if !messages.is_empty() {
                route.queue.send(messages).await?;
                info!(route = %route.name, "routed");
            }
        }
        let to_writer: Vec<OutboundMessage> = routed
            .iter_mut()
            .flat_map(|(_, _, r)| std::mem::take(&mut r.to_writer))
            .collect();
        self.events.send(to_writer).await?;
        Ok(())
    }

    fn route_one(
        &self,
        message: &InboundMessage,
        outline: Option<&Outline>,
    ) -> Result<Routed, FanoutError> {
        let batch = match outline.and_then(|o| o.batch(&message.body)) {
            Some(batch) => batch,
            None => envelope::validate(&message.body)?,
        };
        let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (element, head) in batch.events() {
            by_type
                .entry(&head.event_type)
                .or_default()
                .push(element.raw);
        }
        if by_type.is_empty() {
            return Ok(Routed {
                by_type: BTreeMap::new(),
                to_writer: Vec::new(),
                per_route: Vec::new(),
                records: Vec::new(),
            });
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
        let records = if self.archive.is_some() {
            batch
                .events()
                .map(|(e, _)| match envelope::compact(e.raw) {
                    // Already one line (the usual case): a view of the body, not a copy.
                    Cow::Borrowed(raw) => slice_of(&message.body, raw),
                    Cow::Owned(raw) => Bytes::from(raw),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Routed {
            by_type: by_type
                .into_iter()
                .map(|(t, raws)| (t.to_owned(), raws.len()))
                .collect(),
            to_writer,
            per_route,
            records,
        })
    }
}

/// `part` as a view of `body` when it lies within it, else a copy.
fn slice_of(body: &Bytes, part: &str) -> Bytes {
    let (start, at) = (body.as_ptr() as usize, part.as_ptr() as usize);
    if at >= start && at + part.len() <= start + body.len() {
        body.slice_ref(part.as_bytes())
    } else {
        Bytes::copy_from_slice(part.as_bytes())
    }
}
