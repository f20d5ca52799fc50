//! Re-driving a dead-letter queue back to its source queue.
//!
//! Real SQS moves messages itself (`StartMessageMoveTask`), and this waits and reports progress.
//! Where that API is missing (the local emulator answers 500), messages are moved by hand:
//! receive from the dead-letter queue, send to the source, then delete, at a bounded rate. Both
//! lose nothing if interrupted: a message is deleted only after it was sent (a duplicate is
//! possible, a loss is not).

use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata as _;
use aws_sdk_sqs::types::QueueAttributeName;
use sparklake_core::message::OutboundMessage;

use crate::sqs::{SqsError, SqsQueue};

/// The dead-letter queue of `source`, from its `RedrivePolicy`.
pub async fn dead_letter_queue(source: &SqsQueue) -> Result<Option<SqsQueue>, SqsError> {
    let attributes = source
        .attributes(&[QueueAttributeName::RedrivePolicy])
        .await?;
    let Some(policy) = attributes.get(&QueueAttributeName::RedrivePolicy) else {
        return Ok(None);
    };
    let Some(arn) = dead_letter_arn(policy) else {
        return Ok(None);
    };
    let mut parts = arn.rsplitn(3, ':');
    let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let url = source
        .client()
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| SqsError::Call {
            operation: "GetQueueUrl",
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    Ok(url
        .queue_url()
        .map(|u| SqsQueue::new(source.client().clone(), u).with_compression(source.compresses())))
}

/// `deadLetterTargetArn` out of a `RedrivePolicy` JSON document.
pub fn dead_letter_arn(policy: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    value
        .get("deadLetterTargetArn")?
        .as_str()
        .map(str::to_owned)
}

async fn arn(queue: &SqsQueue) -> Result<String, SqsError> {
    let attributes = queue.attributes(&[QueueAttributeName::QueueArn]).await?;
    attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or(SqsError::Call {
            operation: "GetQueueAttributes",
            message: "no QueueArn".into(),
        })
}

/// Moves every message of `source`'s dead-letter queue back to it; returns how many moved.
pub async fn redrive(
    source: &SqsQueue,
    rate_per_second: u32,
    progress: &(dyn Fn(String) + Sync),
) -> Result<usize, SqsError> {
    let Some(dlq) = dead_letter_queue(source).await? else {
        progress(format!("{}: no dead-letter queue configured", source.url()));
        return Ok(0);
    };
    let (dlq_arn, source_arn) = (arn(&dlq).await?, arn(source).await?);
    let started = source
        .client()
        .start_message_move_task()
        .source_arn(&dlq_arn)
        .destination_arn(&source_arn)
        .send()
        .await;
    match started {
        Ok(_) => wait_for_move_task(source, &dlq_arn, progress).await,
        Err(e) if move_task_unsupported(&e) => {
            progress(format!(
                "{dlq_arn}: message move tasks are not available here; moving by receive, send, delete"
            ));
            move_by_hand(&dlq, source, rate_per_second, progress).await
        }
        Err(e) => Err(SqsError::Call {
            operation: "StartMessageMoveTask",
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        }),
    }
}

fn move_task_unsupported<E: aws_sdk_sqs::error::ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    matches!(status, Some(500 | 501))
        || matches!(
            e.code(),
            Some("NotImplemented" | "UnsupportedOperation" | "InvalidAction")
        )
}

async fn wait_for_move_task(
    source: &SqsQueue,
    dlq_arn: &str,
    progress: &(dyn Fn(String) + Sync),
) -> Result<usize, SqsError> {
    loop {
        let tasks = source
            .client()
            .list_message_move_tasks()
            .source_arn(dlq_arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| SqsError::Call {
                operation: "ListMessageMoveTasks",
                message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
            })?;
        let Some(task) = tasks.results().first() else {
            return Ok(0);
        };
        let moved = task.approximate_number_of_messages_moved();
        let total = task
            .approximate_number_of_messages_to_move()
            .unwrap_or(moved);
        let status = task.status().unwrap_or("UNKNOWN");
        progress(format!("{dlq_arn}: {status}, moved {moved} of {total}"));
        match status {
            "RUNNING" | "CANCELLING" => tokio::time::sleep(Duration::from_secs(2)).await,
            "COMPLETED" => return Ok(usize::try_from(moved).unwrap_or(0)),
            _ => {
                return Err(SqsError::Call {
                    operation: "StartMessageMoveTask",
                    message: format!(
                        "task ended {status}: {}",
                        task.failure_reason().unwrap_or("no reason given")
                    ),
                });
            }
        }
    }
}

async fn move_by_hand(
    dlq: &SqsQueue,
    source: &SqsQueue,
    rate_per_second: u32,
    progress: &(dyn Fn(String) + Sync),
) -> Result<usize, SqsError> {
    let rate = f64::from(rate_per_second.max(1));
    let mut moved = 0;
    loop {
        let received = dlq
            .receive_batch(10, Duration::from_secs(1), Some(Duration::from_secs(120)))
            .await?;
        if received.is_empty() {
            break;
        }
        let started = tokio::time::Instant::now();
        let messages: Vec<OutboundMessage> = received
            .iter()
            .map(|r| OutboundMessage {
                body: r.message.body.clone(),
                attributes: r.message.attributes.clone(),
            })
            .collect();
        // Send first, delete after: interrupted in between, a message is duplicated, not lost.
        source.send_messages(&messages).await?;
        let receipts: Vec<String> = received.iter().map(|r| r.receipt.clone()).collect();
        dlq.delete_batch(&receipts).await?;
        moved += received.len();
        progress(format!("{}: moved {moved} so far", dlq.url()));
        let budget = Duration::from_secs_f64(received.len() as f64 / rate);
        tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
    }
    progress(format!(
        "{}: moved {moved} message(s) back to {}",
        dlq.url(),
        source.url()
    ));
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dead_letter_arn_of_a_redrive_policy() {
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:events-dlq","maxReceiveCount":"5"}"#;
        assert_eq!(
            dead_letter_arn(policy).as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:events-dlq")
        );
        assert_eq!(dead_letter_arn("{}"), None);
        assert_eq!(dead_letter_arn("not json"), None);
    }
}
