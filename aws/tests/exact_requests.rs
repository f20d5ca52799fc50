//! What the emulator cannot show, checked on the exact requests the SDK would send
//! (aws-smithy-mocks intercepts them before the wire): the `StartMessageMoveTask` path of
//! re-drive, and the retry of entries SQS and Firehose report `Failed` inside a 200 answer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchOutput;
use aws_sdk_firehose::types::PutRecordBatchResponseEntry;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
use aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ListMessageMoveTasksResultEntry, QueueAttributeName,
    SendMessageBatchResultEntry,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use bytes::Bytes;
use sparklake_aws::firehose::{FirehoseArchive, PACK_BYTES};
use sparklake_aws::sqs::SqsQueue;
use sparklake_core::message::OutboundMessage;
use sparklake_core::ports::ArchiveAppend;

const SOURCE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/events";
const DLQ_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/events-dlq";
const SOURCE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:events";
const DLQ_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:events-dlq";

fn attributes(pairs: &[(QueueAttributeName, &str)]) -> GetQueueAttributesOutput {
    let map: HashMap<QueueAttributeName, String> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    GetQueueAttributesOutput::builder()
        .set_attributes(Some(map))
        .build()
}

#[tokio::test]
async fn redrive_starts_a_move_task_from_the_dlq_to_its_source_and_waits_for_it() {
    let policy = format!(r#"{{"deadLetterTargetArn":"{DLQ_ARN}","maxReceiveCount":"5"}}"#);
    let source_policy = mock!(Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(SOURCE_URL)
                && r.attribute_names()
                    .contains(&QueueAttributeName::RedrivePolicy)
        })
        .then_output(move || attributes(&[(QueueAttributeName::RedrivePolicy, &policy)]));
    let dlq_url = mock!(Client::get_queue_url)
        .match_requests(|r| {
            r.queue_name() == Some("events-dlq")
                && r.queue_owner_aws_account_id() == Some("123456789012")
        })
        .then_output(|| GetQueueUrlOutput::builder().queue_url(DLQ_URL).build());
    let dlq_arn = mock!(Client::get_queue_attributes)
        .match_requests(|r| r.queue_url() == Some(DLQ_URL))
        .then_output(|| attributes(&[(QueueAttributeName::QueueArn, DLQ_ARN)]));
    let source_arn = mock!(Client::get_queue_attributes)
        .match_requests(|r| {
            r.queue_url() == Some(SOURCE_URL)
                && r.attribute_names().contains(&QueueAttributeName::QueueArn)
        })
        .then_output(|| attributes(&[(QueueAttributeName::QueueArn, SOURCE_ARN)]));
    let start = mock!(Client::start_message_move_task)
        .match_requests(|r| {
            r.source_arn() == Some(DLQ_ARN) && r.destination_arn() == Some(SOURCE_ARN)
        })
        .then_output(|| {
            StartMessageMoveTaskOutput::builder()
                .task_handle("task-1")
                .build()
        });
    let list = mock!(Client::list_message_move_tasks)
        .match_requests(|r| r.source_arn() == Some(DLQ_ARN))
        .then_output(|| {
            ListMessageMoveTasksOutput::builder()
                .results(
                    ListMessageMoveTasksResultEntry::builder()
                        .status("COMPLETED")
                        .approximate_number_of_messages_moved(7)
                        .approximate_number_of_messages_to_move(7)
                        .build(),
                )
                .build()
        });
    let client = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        [
            &source_policy,
            &dlq_url,
            &dlq_arn,
            &source_arn,
            &start,
            &list
        ]
    );
    let source = SqsQueue::new(client, SOURCE_URL);
    let lines = std::sync::Mutex::new(Vec::new());
    let moved = sparklake_aws::redrive::redrive(&source, 10, &|l| lines.lock().unwrap().push(l))
        .await
        .unwrap();
    assert_eq!(moved, 7);
    assert_eq!(
        start.num_calls(),
        1,
        "one move task, from the DLQ to its source"
    );
    assert!(list.num_calls() >= 1);
    assert!(
        lines
            .into_inner()
            .unwrap()
            .iter()
            .any(|l| l.contains("COMPLETED, moved 7 of 7"))
    );
}

fn message(body: &str) -> OutboundMessage {
    OutboundMessage {
        body: Bytes::from(body.to_owned()),
        attributes: Default::default(),
    }
}

#[tokio::test]
async fn failed_send_entries_are_retried_alone_until_they_succeed() {
    let first = mock!(Client::send_message_batch)
        .match_requests(|r| r.entries().len() == 3)
        .then_output(|| {
            SendMessageBatchOutput::builder()
                .successful(
                    SendMessageBatchResultEntry::builder()
                        .id("0")
                        .message_id("a")
                        .md5_of_message_body("x")
                        .build()
                        .unwrap(),
                )
                .successful(
                    SendMessageBatchResultEntry::builder()
                        .id("2")
                        .message_id("c")
                        .md5_of_message_body("x")
                        .build()
                        .unwrap(),
                )
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("1")
                        .sender_fault(false)
                        .code("InternalError")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
    let retry = mock!(Client::send_message_batch)
        .match_requests(|r| {
            r.entries().len() == 1
                && r.entries()[0].id() == "1"
                && r.entries()[0].message_body() == "[2]"
        })
        .then_output(|| {
            SendMessageBatchOutput::builder()
                .successful(
                    SendMessageBatchResultEntry::builder()
                        .id("1")
                        .message_id("b")
                        .md5_of_message_body("x")
                        .build()
                        .unwrap(),
                )
                .set_failed(Some(vec![]))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&first, &retry]);
    let queue = SqsQueue::new(client, SOURCE_URL).with_compression(false);
    queue
        .send_messages(&[message("[1]"), message("[2]"), message("[3]")])
        .await
        .unwrap();
    assert_eq!((first.num_calls(), retry.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_sender_fault_is_not_retried_and_fails_the_send() {
    let refused = mock!(Client::send_message_batch).then_output(|| {
        SendMessageBatchOutput::builder()
            .failed(
                BatchResultErrorEntry::builder()
                    .id("0")
                    .sender_fault(true)
                    .code("InvalidMessageContents")
                    .build()
                    .unwrap(),
            )
            .set_successful(Some(vec![]))
            .build()
            .unwrap()
    });
    let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&refused]);
    let queue = SqsQueue::new(client, SOURCE_URL).with_compression(false);
    let err = queue.send_messages(&[message("[1]")]).await.unwrap_err();
    assert!(err.to_string().contains("InvalidMessageContents"), "{err}");
    assert_eq!(refused.num_calls(), 1);
}

#[tokio::test]
async fn sends_are_packed_to_ten_entries_and_one_mebibyte_a_call() {
    let calls = mock!(Client::send_message_batch)
        .match_requests(|r| {
            let bytes: usize = r.entries().iter().map(|e| e.message_body().len()).sum();
            r.entries().len() <= 10 && bytes <= 1_048_576
        })
        .then_output(|| {
            SendMessageBatchOutput::builder()
                .set_successful(Some(vec![]))
                .set_failed(Some(vec![]))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&calls]);
    let queue = SqsQueue::new(client, SOURCE_URL).with_compression(false);
    let small: Vec<OutboundMessage> = (0..25).map(|i| message(&format!("[{i}]"))).collect();
    queue.send_messages(&small).await.unwrap();
    assert_eq!(calls.num_calls(), 3, "25 messages: 10 + 10 + 5");
    let big = format!("[\"{}\"]", "x".repeat(400_000));
    queue
        .send_messages(&[message(&big), message(&big), message(&big)])
        .await
        .unwrap();
    assert_eq!(
        calls.num_calls(),
        5,
        "three 400 KB messages: two fit a call, the third needs another"
    );
}

#[tokio::test]
async fn failed_firehose_records_are_retried_alone() {
    use aws_sdk_firehose::Client as Firehose;
    let first = mock!(Firehose::put_record_batch)
        .match_requests(|r| r.records().len() == 3)
        .then_output(|| {
            PutRecordBatchOutput::builder()
                .failed_put_count(1)
                .request_responses(
                    PutRecordBatchResponseEntry::builder()
                        .record_id("r0")
                        .build(),
                )
                .request_responses(
                    PutRecordBatchResponseEntry::builder()
                        .error_code("ServiceUnavailableException")
                        .build(),
                )
                .request_responses(
                    PutRecordBatchResponseEntry::builder()
                        .record_id("r2")
                        .build(),
                )
                .build()
                .unwrap()
        });
    // Lines this long are a record each (two would pass PACK_BYTES).
    let line = |key: &str| format!("{{\"{key}\":\"{}\"}}", "x".repeat(PACK_BYTES / 2));
    let second = format!("{}\n", line("b"));
    let retry = mock!(Firehose::put_record_batch)
        .match_requests(move |r| {
            r.records().len() == 1 && r.records()[0].data().as_ref() == second.as_bytes()
        })
        .then_output(|| {
            PutRecordBatchOutput::builder()
                .failed_put_count(0)
                .request_responses(
                    PutRecordBatchResponseEntry::builder()
                        .record_id("r1")
                        .build(),
                )
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&first, &retry]);
    let archive = FirehoseArchive::new(client, "archive");
    let records = ["a", "b", "c"].map(|k| Bytes::from(line(k))).to_vec();
    archive.append(records).await.unwrap();
    assert_eq!((first.num_calls(), retry.num_calls()), (1, 1));
}

#[tokio::test]
async fn small_archive_lines_are_packed_into_few_records() {
    use aws_sdk_firehose::Client as Firehose;
    // 1,000 lines of ~1 KB: four records of at most PACK_BYTES, not 1,000 records billed at
    // 5 KB each; their concatenation is the NDJSON of the lines in order.
    let lines: Vec<String> = (0..1000)
        .map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "y".repeat(1000)))
        .collect();
    let expected: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    let call = mock!(Firehose::put_record_batch)
        .match_requests(move |r| {
            let joined: Vec<u8> = r
                .records()
                .iter()
                .flat_map(|rec| rec.data().as_ref().to_vec())
                .collect();
            r.records().len() == 4
                && r.records()
                    .iter()
                    .all(|rec| rec.data().as_ref().len() <= PACK_BYTES)
                && joined == expected
        })
        .then_output(|| {
            PutRecordBatchOutput::builder()
                .failed_put_count(0)
                .set_request_responses(Some(Vec::new()))
                .build()
                .unwrap()
        });
    let client = mock_client!(aws_sdk_firehose, RuleMode::MatchAny, [&call]);
    let archive = FirehoseArchive::new(client, "archive");
    archive
        .append(lines.into_iter().map(Bytes::from).collect())
        .await
        .unwrap();
    assert_eq!(call.num_calls(), 1);
}

mod glue {
    use std::collections::HashMap;

    use aws_sdk_glue::Client;
    use aws_sdk_glue::operation::get_table::GetTableOutput;
    use aws_sdk_glue::operation::update_table::{UpdateTableError, UpdateTableOutput};
    use aws_sdk_glue::types::Table;
    use aws_sdk_glue::types::error::ConcurrentModificationException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use sparklake_aws::glue::{GlueProjection, VALUES_PARAMETER};
    use sparklake_core::ports::TypeCatalog;

    fn table(version: &str, values: &str) -> GetTableOutput {
        let parameters: HashMap<String, String> = [
            ("projection.enabled", "true"),
            ("projection.event_type.type", "enum"),
            (VALUES_PARAMETER, values),
            ("classification", "parquet"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        GetTableOutput::builder()
            .table(
                Table::builder()
                    .name("events")
                    .version_id(version)
                    .table_type("EXTERNAL_TABLE")
                    .set_parameters(Some(parameters))
                    .build()
                    .unwrap(),
            )
            .build()
    }

    /// Two writers add types at once: the update made against a version someone else changed
    /// is refused (Glue's optimistic locking), and the writer re-reads, keeps the other's type
    /// and adds its own against the new version. Nothing else about the table changes.
    #[tokio::test]
    async fn a_lost_race_re_reads_the_table_and_keeps_both_writers_types() {
        let first_read = mock!(Client::get_table).then_output(|| table("1", "bounce"));
        let refused = mock!(Client::update_table)
            .match_requests(|r| r.version_id() == Some("1"))
            .then_error(|| {
                UpdateTableError::ConcurrentModificationException(
                    ConcurrentModificationException::builder()
                        .message("version changed")
                        .build(),
                )
            });
        let second_read = mock!(Client::get_table).then_output(|| table("2", "bounce,open"));
        let accepted = mock!(Client::update_table)
            .match_requests(|r| {
                let input = r.table_input().unwrap();
                let parameters = input.parameters().unwrap();
                r.version_id() == Some("2")
                    && parameters.get(VALUES_PARAMETER).map(String::as_str)
                        == Some("bounce,open,click")
                    && parameters.get("classification").map(String::as_str) == Some("parquet")
                    && input.table_type() == Some("EXTERNAL_TABLE")
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let client = mock_client!(
            aws_sdk_glue,
            RuleMode::Sequential,
            [&first_read, &refused, &second_read, &accepted]
        );
        let projection = GlueProjection::new(client, "sparklake", &["events".to_owned()]);
        let outcome = projection
            .ensure_projected(&["click".to_owned(), "bounce".to_owned()])
            .await
            .unwrap();
        assert_eq!(outcome.added, vec!["click".to_owned()]);
        assert!(outcome.unprojectable.is_empty());
        assert_eq!(
            (
                first_read.num_calls(),
                refused.num_calls(),
                second_read.num_calls(),
                accepted.num_calls()
            ),
            (1, 1, 1, 1)
        );
        // What the table projects is remembered: the same types again make no call.
        let again = projection
            .ensure_projected(&["click".to_owned(), "open".to_owned()])
            .await
            .unwrap();
        assert_eq!(again, Default::default());
        assert_eq!(first_read.num_calls() + second_read.num_calls(), 2);
    }

    /// A type is trusted as projected only once every table has it: when the second table's
    /// update fails, the next call checks (and updates) again instead of skipping the type.
    #[tokio::test]
    async fn a_failure_on_one_table_is_not_remembered_as_done() {
        let read = || mock!(Client::get_table).then_output(|| table("1", "bounce"));
        let update =
            || mock!(Client::update_table).then_output(|| UpdateTableOutput::builder().build());
        let (read1, read2, read3, read4) = (read(), read(), read(), read());
        let (update1, update3, update4) = (update(), update(), update());
        let denied = mock!(Client::update_table)
            .then_error(|| UpdateTableError::unhandled("AccessDeniedException".to_owned()));
        let client = mock_client!(
            aws_sdk_glue,
            RuleMode::Sequential,
            [
                &read1, &update1, &read2, &denied, &read3, &update3, &read4, &update4
            ]
        );
        let projection = GlueProjection::new(
            client,
            "sparklake",
            &["events".to_owned(), "events_csv".to_owned()],
        );
        assert!(
            projection
                .ensure_projected(&["click".to_owned()])
                .await
                .is_err()
        );
        let retried = projection
            .ensure_projected(&["click".to_owned()])
            .await
            .unwrap();
        assert_eq!(retried.added, vec!["click".to_owned()]);
        assert_eq!(
            (
                read3.num_calls(),
                update3.num_calls(),
                read4.num_calls(),
                update4.num_calls()
            ),
            (1, 1, 1, 1),
            "both tables read and updated again after the failure"
        );
    }

    /// Any other failure is the caller's to retry (the writer fails the messages).
    #[tokio::test]
    async fn a_refused_update_is_an_error() {
        let read = mock!(Client::get_table).then_output(|| table("1", "bounce"));
        let denied = mock!(Client::update_table).then_error(|| {
            UpdateTableError::unhandled("AccessDeniedException: not allowed".to_owned())
        });
        let client = mock_client!(aws_sdk_glue, RuleMode::MatchAny, [&read, &denied]);
        let projection = GlueProjection::new(client, "sparklake", &["events".to_owned()]);
        let result = projection.ensure_projected(&["click".to_owned()]).await;
        assert!(result.is_err());
        assert_eq!(denied.num_calls(), 1);
    }
}
