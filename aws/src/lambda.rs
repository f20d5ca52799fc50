//! The SQS event a Lambda receives, as the handlers' messages, and the partial-batch response.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use sparklake_core::message::InboundMessage;

use crate::codec::CONTENT_ENCODING;
use crate::sqs::to_inbound;

/// The event's records as messages. A record without a message id cannot be reported failed
/// or succeeded; there is none in practice, and such a record is skipped with its count returned.
pub fn messages(event: &SqsEvent) -> (Vec<InboundMessage>, usize) {
    let mut skipped = 0;
    let messages = event
        .records
        .iter()
        .filter_map(|record| {
            let Some(id) = record.message_id.as_deref() else {
                skipped += 1;
                return None;
            };
            let strings: Vec<(String, String)> = record
                .message_attributes
                .iter()
                .filter_map(|(k, v)| v.string_value.clone().map(|s| (k.clone(), s)))
                .collect();
            let encoding = record
                .message_attributes
                .get(CONTENT_ENCODING)
                .and_then(|v| v.string_value.as_deref());
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            Some(to_inbound(
                id,
                record.body.as_deref().unwrap_or(""),
                encoding,
                strings,
                receive_count,
            ))
        })
        .collect();
    (messages, skipped)
}

/// The response that tells the event source mapping which messages to retry.
pub fn batch_response(failed: &[String]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
            failure
        })
        .collect();
    response
}
