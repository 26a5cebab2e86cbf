"""Typed state: the conversation, the case file, the handoff envelope and record."""

from handoff.state.case_file import CaseFile, CaseFileError, checked_update, merge_case_file
from handoff.state.conversation import (
    MESSAGE_WINDOW,
    RECORD_WINDOW,
    TRUSTED_KEYS,
    HandoffInput,
    HandoffOutput,
    HandoffState,
    append_records,
    merge_usage,
    window_messages,
)
from handoff.state.handoff import (
    HandoffRecord,
    HandoffRejection,
    HandoffRequest,
    InitResult,
    Outcome,
    RejectionCode,
    TriggerKind,
    plain_record,
    plain_request,
    plain_update,
    records_newest_first,
    records_of,
    request_of,
)

__all__ = [
    "MESSAGE_WINDOW",
    "RECORD_WINDOW",
    "TRUSTED_KEYS",
    "CaseFile",
    "CaseFileError",
    "HandoffRecord",
    "HandoffRejection",
    "HandoffInput",
    "HandoffOutput",
    "HandoffRequest",
    "HandoffState",
    "InitResult",
    "Outcome",
    "RejectionCode",
    "TriggerKind",
    "append_records",
    "checked_update",
    "merge_case_file",
    "merge_usage",
    "plain_record",
    "plain_request",
    "plain_update",
    "records_newest_first",
    "records_of",
    "request_of",
    "window_messages",
]

from handoff.state.events import EventKind, HandoffEvent

__all__ += ["EventKind", "HandoffEvent"]
