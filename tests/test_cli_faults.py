"""The command line as a new user meets it: no input, no setting and no faulty model garbles a
conversation, stalls the terminal or prints a traceback (unless asked with --debug)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from typer.testing import CliRunner

from handoff.agents.offline import OfflineChatModel
from handoff.cli.main import app
from handoff.graphs.boundary import MAX_MESSAGE_CHARS, THREAD_ID_MAX
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence
from handoff.graphs.registry import get_graph
from handoff.service.locks import PostgresTurnLocks
from tests.support.local_http import JsonHandler, serving
from tests.support.openai_stub import TRICKLE, OpenAIStub
from tests.support.postgres import postgres_schema

ROOT = Path(__file__).resolve().parents[1]
GRAPH = "customer-service"
runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'handoff.sqlite'}"


def transcript(url: str, thread_id: str) -> list[BaseMessage]:
    """The thread's whole stored transcript, as a restarted process reads it."""
    with open_persistence(url) as persistence:
        graph = get_graph(GRAPH).build(model=OfflineChatModel()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        values = graph.get_state({"configurable": {"thread_id": thread_id}}).values
        return Journal(graph.store, thread_id).messages_at(values)


def user_texts(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, HumanMessage)]


def assert_each_answered(messages: list[BaseMessage]) -> None:
    """Every user message is followed by an agent's answer before the next user message."""
    positions = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    for start, end in zip(positions, [*positions[1:], len(messages)], strict=True):
        answers = [m for m in messages[start + 1:end] if isinstance(m, AIMessage) and m.text.strip()]
        assert answers, f"{messages[start].content!r} has no answer"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {text!r}"
    return lines[0]


CLI = ("import signal\nfrom handoff.cli.main import app\n"
       "signal.signal(signal.SIGINT, signal.default_int_handler)\napp(prog_name='handoff')")
"""``handoff`` with Ctrl-C handled as in a terminal, even when the test runner was started with SIGINT
ignored (as a shell's background job is)."""


def cli_process(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``handoff ARGS`` as a real process."""
    return subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def free_port() -> int:
    """A port nothing listens on (taken and given back at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# thread ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("thread_id", ["order.42", "dana@example.com"])
def test_a_thread_id_with_a_dot_holds_a_whole_conversation(thread_id: str) -> None:
    first = invoke("run", GRAPH, "-m", "Hi, account ACC-1001", "--thread", thread_id, "--json")
    second = invoke("run", GRAPH, "-m", "My internet keeps dropping", "--thread", thread_id, "--json")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert json.loads(second.stdout)["thread_id"] == thread_id
    assert "Traceback" not in first.output + second.output
    stored = transcript(sqlite_url(Path(os.environ["HANDOFF_DATA_DIR"])), thread_id)
    assert user_texts(stored) == ["Hi, account ACC-1001", "My internet keeps dropping"]


@pytest.mark.parametrize("bad", ["x" * 5000, "a\nb", "", " spaced", "x" * (THREAD_ID_MAX + 1), "tab\there"])
@pytest.mark.parametrize("command", [
    ["run", GRAPH, "-m", "hello", "--thread"],
    ["chat", GRAPH, "--thread"],
    ["answer", GRAPH, "--reply", "ok", "--"],
    ["history", "--"],
    ["report", "--thread"],
])
def test_a_bad_thread_id_is_refused_in_one_line_before_anything_is_stored(
    command: list[str], bad: str
) -> None:
    result = invoke(*command, bad, input="hello\n")
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert "thread id" in line and "Traceback" not in result.output
    listed = invoke("threads", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_threads_shows_any_stored_id_on_one_line_of_its_own() -> None:
    """Ids stored before the rule (or by another program) are escaped and cut, never read as markup."""
    odd = ["x" * 5000, "two\nlines", "[bold]markup[/bold]", "tab\tand\rcr", "plain-id"]
    url = sqlite_url(Path(os.environ["HANDOFF_DATA_DIR"]))
    with open_persistence(url) as persistence:
        for thread_id in odd:
            persistence.checkpointer.put(
                {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}, empty_checkpoint(),
                {"source": "input", "step": -1}, {})
    result = runner.invoke(app, ["threads"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.strip()][1:]  # under the header
    assert len(rows) == len(odd)
    assert all(len(row) < 200 for row in rows)
    assert any("[bold]markup[/bold]" in row for row in rows)
    assert any("two\\nlines" in row for row in rows)
    assert any("plain-id" in row for row in rows)
    assert {t["thread_id"] for t in json.loads(invoke("threads", "--json").stdout)} == set(odd)


# settings and errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "a folder under a file"])
@pytest.mark.parametrize("command", [["run", GRAPH, "-m", "hello"], ["threads"], ["chat", GRAPH]])
def test_an_unusable_data_dir_is_one_line_naming_the_setting_and_path(
    where: str, command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file, not a folder")
    data_dir = blocker if where == "a file" else blocker / "inside"
    monkeypatch.setenv("HANDOFF_DATA_DIR", str(data_dir))
    result = invoke(*command, input="hello\n")
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert "HANDOFF_DATA_DIR" in line and str(data_dir) in line
    assert "Traceback" not in result.output


def test_a_bad_handoff_db_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_DB", "conversations.txt")
    result = invoke("run", GRAPH, "-m", "hello")
    assert result.exit_code == 2
    assert "HANDOFF_DB" in one_line(result.stderr)


def test_a_message_over_the_limit_is_refused_in_one_line_with_the_limit() -> None:
    result = invoke("run", GRAPH, "-m", "y" * (MAX_MESSAGE_CHARS + 1))
    assert result.exit_code == 2
    assert str(MAX_MESSAGE_CHARS) in one_line(result.stderr)


def test_an_unexpected_failure_is_one_line_and_its_traceback_only_with_debug(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, text: str, on_event: Any = None) -> Any:
        raise RuntimeError("disk on fire\nsecond line of detail")

    monkeypatch.setattr("handoff.graphs.session.HandoffSession.send", broken)
    plain = invoke("run", GRAPH, "-m", "hello")
    assert plain.exit_code == 1
    line = one_line(plain.stderr)
    assert "RuntimeError" in line and "disk on fire" in line and "--debug" in line
    debug = invoke("--debug", "run", GRAPH, "-m", "hello")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and "disk on fire" in debug.stderr


def test_a_wrong_model_url_answers_honestly_and_names_the_url_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    env = {**os.environ, "OPENAI_BASE_URL": url, "HANDOFF_DATA_DIR": str(tmp_path / "data")}
    done = cli_process("run", GRAPH, "-m", "hello", env=env)
    out, err = done.communicate(timeout=240)
    assert done.returncode == 0, err
    assert "(system)" in out
    line = one_line(err)
    assert url in line and "OPENAI_BASE_URL" in line
    assert "Traceback" not in err


# escalation and chat --------------------------------------------------------------------------


def test_an_escalated_turn_says_in_reply_that_a_person_has_been_asked() -> None:
    result = invoke("run", GRAPH, "-m", "This is useless, I want to speak to a real person", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pending_escalation"] is not None
    assert data["speaker"] == "system"
    assert "person" in data["reply"].lower()
    answered = invoke("answer", GRAPH, data["thread_id"], "--reply", "Hello, I am Sam from the support team.")
    assert answered.exit_code == 0, answered.output
    assert "Sam from the support team" in answered.stdout


def test_a_chat_message_over_the_limit_is_refused_and_the_chat_goes_on() -> None:
    too_long = "z" * (MAX_MESSAGE_CHARS + 1)
    result = invoke("chat", GRAPH, "--thread", "chat-1",
                    input=f"Hello there\n{too_long}\nMy internet keeps dropping\n")
    assert result.exit_code == 0, result.output
    assert str(MAX_MESSAGE_CHARS) in result.stderr
    stored = transcript(sqlite_url(Path(os.environ["HANDOFF_DATA_DIR"])), "chat-1")
    assert user_texts(stored) == ["Hello there", "My internet keeps dropping"]
    assert_each_answered(stored)


# one turn at a time per thread --------------------------------------------------------------------


class HoldingModel(JsonHandler):
    """An OpenAI-compatible server that holds its first chat call until a second one has been
    answered (or ``HOLD_S`` have passed): two turns that do not exclude each other are sure to
    overlap, and the later one to finish first."""

    HOLD_S = 10.0
    first = threading.Event()
    second = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("chat/completions"):
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        holds = not HoldingModel.first.is_set()
        if holds:
            HoldingModel.first.set()
            HoldingModel.second.wait(self.HOLD_S)
        asked = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
        answer = {"role": "assistant", "content": f"Noted: {asked[-1] if asked else ''}"}
        self.send_json(200, {
            "id": uuid.uuid4().hex, "object": "chat.completion", "created": 0, "model": "holding",
            "choices": [{"index": 0, "finish_reason": "stop", "message": answer}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })
        if not holds and not HoldingModel.second.is_set():
            time.sleep(1.0)  # time for the second turn to store its answer before the first one goes on
            HoldingModel.second.set()


def test_two_runs_on_one_thread_take_turns_and_every_message_is_stored_once_and_answered(
    tmp_path: Path
) -> None:
    data_dir = tmp_path / "race"
    HoldingModel.first.clear()
    HoldingModel.second.clear()
    with serving(HoldingModel) as server:
        env = {**os.environ, "OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
               "HANDOFF_DATA_DIR": str(data_dir)}
        first = cli_process("run", GRAPH, "-m", "first message", "--thread", "shared", "--json", env=env)
        assert HoldingModel.first.wait(60), "the first run never reached the model"
        # The first run is in the middle of its turn now: the second one comes in on the same thread.
        second = cli_process("run", GRAPH, "-m", "second message", "--thread", "shared", "--json", env=env)
        results = [p.communicate(timeout=120) + (p.returncode,) for p in (first, second)]
    assert [code for _, _, code in results] == [0, 0], [err for _, err, _ in results]
    stored = transcript(sqlite_url(data_dir), "shared")
    assert user_texts(stored) == ["first message", "second message"]
    assert_each_answered(stored)


def test_a_busy_thread_is_refused_with_exit_3_when_not_waiting(tmp_path: Path) -> None:
    """Another process holds the thread's lock; ``--wait 0`` refuses at once and stores nothing."""
    data_dir = tmp_path / "busy"
    data_dir.mkdir()
    url = sqlite_url(data_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom handoff.cli.turn_lock import turn_lock\n"
         f"with turn_lock({url!r}, 'held', wait=0):\n    print('held', flush=True)\n    sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        env = {**os.environ, "HANDOFF_DATA_DIR": str(data_dir)}
        busy = cli_process("run", GRAPH, "-m", "hello", "--thread", "held", "--wait", "0", env=env)
        _, err = busy.communicate(timeout=120)
        assert busy.returncode == 3, err
        assert "held" in one_line(err) and "busy" in err
        other = cli_process("run", GRAPH, "-m", "hello", "--thread", "another", "--wait", "0", env=env)
        assert other.wait(timeout=120) == 0  # the lock is the thread's, not the database's
    finally:
        holder.communicate("", timeout=30)
    assert user_texts(transcript(url, "held")) == []
    assert invoke("run", GRAPH, "-m", "hello", "--thread", "held", "--db", url, "--wait", "0").exit_code == 0


def test_the_cli_and_the_service_share_the_turn_lock_on_postgresql() -> None:
    thread_id = f"pg-{uuid.uuid4().hex[:8]}"
    with postgres_schema("cli_faults") as url:
        async def held_by_the_service(work):
            locks = PostgresTurnLocks(url)
            lock = await locks.acquire(thread_id)
            assert lock is not None
            try:
                return await asyncio.to_thread(work)
            finally:
                await lock.release()
                await locks.close()

        busy = asyncio.run(held_by_the_service(
            lambda: invoke("run", GRAPH, "-m", "hello", "--thread", thread_id, "--db", url, "--wait", "0")))
        assert busy.exit_code == 3, busy.output
        assert thread_id in one_line(busy.stderr)
        free = invoke("run", GRAPH, "-m", "hello", "--thread", thread_id, "--db", url, "--wait", "0")
        assert free.exit_code == 0, free.output
        assert user_texts(transcript(url, thread_id)) == ["hello"]


# Ctrl-C ---------------------------------------------------------------------------------------------


def test_ctrl_c_stops_a_turn_on_a_hung_model_and_the_thread_goes_on(
    openai_stub: OpenAIStub, tmp_path: Path
) -> None:
    openai_stub.default = TRICKLE  # the model accepts the request and never finishes its answer
    data_dir = tmp_path / "hung"
    env = {**os.environ, "OPENAI_BASE_URL": openai_stub.base_url, "HANDOFF_DATA_DIR": str(data_dir)}
    hung = cli_process("run", GRAPH, "-m", "first message", "--thread", "stuck.1", env=env)
    try:
        for _ in range(600):
            if openai_stub.requests or hung.poll() is not None:
                break
            time.sleep(0.1)
        assert openai_stub.requests, "the turn never reached the model"
        hung.send_signal(signal.SIGINT)
        _, err = hung.communicate(timeout=60)
    finally:
        if hung.poll() is None:
            hung.kill()
    assert hung.returncode == 130, err
    assert "stuck.1" in err and "Traceback" not in err

    offline = {k: v for k, v in env.items() if k != "OPENAI_BASE_URL"}
    resumed = cli_process("run", GRAPH, "-m", "second message", "--thread", "stuck.1", "--json", env=offline)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert json.loads(out)["thread_id"] == "stuck.1"
    stored = transcript(sqlite_url(data_dir), "stuck.1")
    assert user_texts(stored) == ["first message", "second message"]
    assert_each_answered(stored)
