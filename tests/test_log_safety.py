"""Nothing sensitive in any log record at any level: our code, LangGraph, or a DEBUG database driver
(aiosqlite logs every statement with its parameters)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from uvicorn.logging import AccessFormatter

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.offline import OfflineChatModel
from handoff.graphs import log_safety
from handoff.graphs.customer_service import SENSITIVITY, build_customer_service_graph
from handoff.service.storage import open_service_persistence
from tests.support.debug_logs import Records, root_debug_logs

CONVERSATION = (
    "Hi, this is Dana, account ACC-1001, postcode 90210, email dana@example.com.",
    "My internet keeps dropping every evening.",
    "Thanks. Also my card 4111 1111 1111 1111 was charged twice on invoice INV-2002 and I want a refund.",
)
SENSITIVE = ("ACC-1001", "Dana", "Reyes", "dana@example.com", "90210", "4111 1111 1111 1111",
             "4111111111111111")


@pytest.fixture
def debug_logs() -> Iterator[Records]:
    with root_debug_logs() as records:
        yield records


def leaked(lines: list[str]) -> list[str]:
    return [value for value in SENSITIVE if any(value in line for line in lines)]


def test_a_turn_on_sqlite_with_debug_logging_logs_nothing_sensitive(tmp_path: Path, debug_logs: Records) -> None:
    async def conversation() -> None:
        async with open_service_persistence(f"sqlite:///{tmp_path / 'logs.sqlite'}") as persistence:
            graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
                checkpointer=persistence.checkpointer, store=persistence.store)
            config = {"configurable": {"thread_id": "debug-logs"}}
            for text in CONVERSATION:
                await graph.ainvoke({"messages": [HumanMessage(text)]}, config)

    asyncio.run(conversation())

    driver = [line for line in debug_logs.lines if " aiosqlite " in line and "executing" in line]
    assert any("INSERT" in line for line in driver)  # the driver did log its statements and parameters
    assert any("[account]" in line or "[name]" in line for line in driver)
    assert leaked(debug_logs.lines) == []


def test_statement_parameters_are_masked_and_binary_ones_elided(debug_logs: Records) -> None:
    log_safety.protect(SENSITIVITY)
    execute = functools.partial(print, "INSERT INTO store VALUES (?, ?)", (b"\xa8ACC-1001", '{"name": "Dana Reyes"}'))

    logging.getLogger("aiosqlite").debug("executing %s", execute)

    [line] = debug_logs.lines
    assert line == "DEBUG aiosqlite executing print('INSERT INTO store VALUES (?, ?)', (<9 bytes>, '{\"name\": \"[name]\"}'))"


def test_a_traceback_is_masked_and_the_exception_dropped(debug_logs: Records) -> None:
    log_safety.protect(SENSITIVITY)
    try:
        raise LookupError("no account 'ACC-1001' for dana@example.com")
    except LookupError:
        logging.getLogger("handoff.graphs.agent_node").exception("lookup failed for %s", "Dana Reyes")

    [record] = debug_logs.records
    assert record.exc_info is None and "LookupError: no account '[account]' for [email]" in (record.exc_text or "")
    assert record.getMessage() == "lookup failed for [name]"
    assert leaked(debug_logs.lines) == []


def test_a_structured_event_stays_a_dict_with_its_values_masked(debug_logs: Records) -> None:
    log_safety.protect(SENSITIVITY)
    event = {"event": "run input", "input": {"messages": ["this is Dana, postcode 90210"]}, "postcode": "90210",
             "attempt": 1}

    logging.getLogger("langgraph_api.worker").info(event)

    [record] = debug_logs.records
    assert record.msg == {"event": "run input", "input": {"messages": ["this is [name], postcode [postcode]"]},
                          "postcode": "[masked]", "attempt": 1}


def test_bytes_inside_an_opaque_value_are_read_word_by_word(debug_logs: Records) -> None:
    log_safety.protect(SENSITIVITY)

    class Row:
        def __repr__(self) -> str:
            return repr(b"\xa8ACC-1001\xaaDana Reyes")

    logging.getLogger("driver").debug("row %r, broken format %d", Row(), "x")

    [line] = debug_logs.lines
    assert leaked([line]) == [] and "[account]" in line


def test_arguments_keep_their_shape_for_formatters_that_unpack_them(debug_logs: Records) -> None:
    log_safety.protect(SENSITIVITY)
    # uvicorn's access-log call shape, on a logger of our own: a uvicorn started by an earlier test
    # sets up "uvicorn.access" (level, propagation) for itself.
    access = logging.getLogger("tests.uvicorn_access_shape")
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/threads?email=dana@example.com", "1.1", 200)
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/ok", "1.1", 200)

    masked, untouched = debug_logs.records
    assert masked.args == ("127.0.0.1:5000", "GET", "/threads?email=[email]", "1.1", 200)
    assert untouched.args == ("127.0.0.1:5000", "GET", "/ok", "1.1", 200)
    assert AccessFormatter("%(request_line)s %(status_code)s", use_colors=False).format(masked) == (
        "GET /threads?email=[email] HTTP/1.1 200 OK")


def test_a_sensitive_value_split_between_template_and_argument_is_masked_as_one_line(
    debug_logs: Records,
) -> None:
    log_safety.protect(SENSITIVITY)

    logging.getLogger("handoff.service").info("verified with postcode %s", "12345")

    [record] = debug_logs.records
    assert (record.msg, record.args) == ("verified with postcode [postcode]", ())
