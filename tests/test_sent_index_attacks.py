"""Attacks on telling a resent message from a new one by the journal's index (graphs/journal.py ``SENT``).

A thread the service registers now carries ``sent_index``; ``send`` then asks ``find_sent`` with
``indexed=True``: one keyed read of where the message id was last stored, checked against the position,
instead of searching the journal's last ``LOOKBACK`` positions. A thread registered without the mark
keeps the scan. A hostile or unlucky client must not be able to tell the two apart: every request is sent
to twin threads in services of their own (``Apart`` stores on one database), one registered with the
index and one without it, and both must answer alike and keep the same journal; before every send both
lookups are also run on the very same state and must find the same message, the same following
messages and the same "latest". Memory and PostgreSQL.

The ways in: odd message ids (paths, escapes, unicode, the longest admitted, ids refused), an id another
thread used, the lookback's edge, time travel (forks, a turn replayed from the middle, Studio editing an
older checkpoint), a turn left unfinished or archived with its checkpoint lost, user messages Studio
adds, and random conversations of all of these (hypothesis). The end of the file holds the cases this
attack first found the index answering otherwise: an id stored twice and a fork between the copies, and a
message stored with the empty id, now answered as the scan does; and, as strict xfails naming the case, the
two that remain: one id stored twice within the lookback (the index finds the latest copy), and a turn a
worker of the previous release ran during a rolling upgrade (docs/service.md).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore, GetOp, Op, PutOp, Result

from handoff.agents.offline import OfflineChatModel
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.journal import SENT, Journal, sent_key
from handoff.graphs.persistence import Persistence
from handoff.service.blocking import BlockingHandoffService
from handoff.service.embedding import SENT_INDEX, THREADS_NAMESPACE, HandoffService
from handoff.service.errors import ServiceError
from handoff.service.models import AnswerEscalation
from handoff.service.storage import open_service_persistence
from handoff.service.transcript import LOOKBACK, SentBefore, find_sent, settled
from tests.support.stopped_turns import stop_after_steps
from tests.test_service_settled_attacks import Apart, config, ended_checkpoints, run, serving, user

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "handoff-hypothesis")
"""Hypothesis' caches go to the temp dir, not into the repo."""

POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HELLO = "Hi, this is Dana, account ACC-1001, postcode 90210."
TECHNICAL = "My internet keeps dropping every evening."
PLAN = "Can I change my plan?"
AFTER = "Thanks, what happens next?"
WANTS_A_PERSON = "This is useless, I want to speak to a manager."
STUDIO_TEXT = "The operator typed this."

ODD_IDS = (
    "m-1",
    "../x", "../../handoff/sent/x", "a/b", "%", "%2e%2e%2fx", "*", "?q=1#frag",  # paths, URLs, wildcards
    " ", "  two leading spaces", "trailing ",  # whitespace only or around
    "caf\u00e9", "cafe\u0301",  # the same word composed and decomposed: two ids, not one
    "\u65e5\u672c\u8a9e\u306eID", "\U0001f642", "\u200b", "\ufeff", "\u2028",  # CJK, emoji, zero-width, BOM, LS
    "\\ud800", "\\u0000", "'; DROP TABLE store; --",  # text that spells escapes or SQL
    "a" * 128,  # the longest id admitted
    "000000000", sent_key("m-1"),  # a journal position's key, another id's index key
    "None", "null", "0",
)
"""Ids the service admits; each one must be told new or resent exactly as the scan tells it."""
REFUSED_IDS = ("a" * 129, "tab\there", "line\nbreak", "nul\x00", "\ud800", "del\x7f")
"""Ids the boundary refuses (too long, a control character, an unpaired surrogate): before any lookup."""


# --- twin threads: one registered with the index, one without ------------------------------------------

class CountedApart(Apart):
    """``Apart``, counting the keys the service's sends read by namespace kind (``sent``, ``transcript``):
    the twin registered without the index must never read one, or it is not the old path at all."""

    def __init__(self, store: Any, label: str) -> None:
        super().__init__(store, label)
        self.reads: Counter[str] = Counter()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        self.reads.update(op.namespace[1] for op in ops if isinstance(op, GetOp) and len(op.namespace) > 1)
        return await super().abatch(ops)


Outcome = tuple[Any, ...]


class Side:
    """One twin: a service whose threads are registered with the index (``indexed``) or without it."""

    def __init__(self, service: BlockingHandoffService, store: CountedApart, indexed: bool) -> None:
        self.service = service
        self.store = store
        self.indexed = indexed
        self.graph: CompiledStateGraph = service.graph("customer-service")
        self.client_ids: set[str] = set()
        self.sent_reads = 0
        """Index reads the service's own sends made (the lookups ``agree`` makes are not counted)."""
        self.thread_id = self.start()

    def start(self) -> str:
        """A new thread; without the index, registered as a service that kept none registered it."""
        thread_id = self.service.start_thread().thread_id
        if not self.indexed:
            item = self.service.portal.call(self.store.aget, THREADS_NAMESPACE, thread_id)
            assert item is not None and item.value.get(SENT_INDEX) is True
            value = {k: v for k, v in item.value.items() if k != SENT_INDEX}
            self.service.portal.call(partial(self.store.aput, THREADS_NAMESPACE, thread_id, value, index=False))
            self.service.service._registrations.pop(thread_id, None)  # read again, as after a restart
        return thread_id

    # reading the thread

    def transcript_len(self, thread_id: str | None = None) -> int:
        snapshot = self.service.portal.call(self.graph.aget_state, config(thread_id or self.thread_id))
        return int((snapshot.values or {}).get("transcript_len") or 0)

    def agree(self, message_id: str, thread_id: str | None = None) -> SentBefore | None:
        """Both lookups on the thread's state as ``send`` reads it (the checkpoint's row alone when the
        last run ended, else the full state) and on the full state too: the same answer, field by field."""
        thread_id = thread_id or self.thread_id
        graph, journal = self.graph, Journal(self.graph.store, thread_id)

        async def lookups() -> list[tuple[dict[str, Any], SentBefore | None, SentBefore | None]]:
            snapshot = await graph.aget_state(config(thread_id))
            views: list[dict[str, Any]] = [dict(snapshot.values or {})]
            ended = await settled(graph, thread_id)
            if ended is not None:
                views.append({"transcript_len": ended.transcript_len})
            return [(values, await find_sent(journal, values, message_id, indexed=True),
                     await find_sent(journal, values, message_id)) for values in views]

        found = self.service.portal.call(lookups)
        for values, indexed, scanned in found:
            assert indexed == scanned, (
                f"message id {message_id!r} at transcript_len {values.get('transcript_len')} "
                f"(window {'read' if 'messages' in values else 'not read'}): the index found {seen(indexed)}, "
                f"the scan {seen(scanned)}")
        return found[-1][1]

    def journal(self) -> tuple[Any, ...]:
        """The thread's stored messages: type, text, and a user message's id when a client gave it."""
        stored = self.service.portal.call(Journal(self.graph.store, self.thread_id).amessages,
                                          self.transcript_len())
        return tuple((m.type, m.text, (m.id if m.id in self.client_ids else "<drawn>")
                      if isinstance(m, HumanMessage) else None) for m in stored)

    # acting on it

    def send(self, text: str, message_id: str | None, thread_id: str | None = None) -> Outcome:
        """A send as its client sees it (ids and timings left out), after checking both lookups agree."""
        thread_id = thread_id or self.thread_id
        if message_id is not None:
            self.client_ids.add(message_id)
            self.agree(message_id, thread_id)
        before = self.store.reads[SENT]
        try:
            result = self.service.result(self.service.send(thread_id, text, message_id=message_id))
        except ServiceError as error:
            return ("refused", error.code)
        finally:
            self.sent_reads += self.store.reads[SENT] - before
        escalation = result.escalation
        return ("answered", result.duplicate, result.reply, result.active_agent,
                tuple((m.role, m.agent, m.text) for m in result.messages),
                tuple((r.source, r.target, r.outcome) for r in result.handoffs),
                None if escalation is None else (escalation.node, escalation.question))

    def stop(self, text: str, message_id: str, steps: int) -> Outcome:
        """A send whose worker dies after ``steps`` steps (its stream closed there)."""
        self.client_ids.add(message_id)
        self.agree(message_id)
        try:
            stream = self.service.send(self.thread_id, text, message_id=message_id)
        except ServiceError as error:
            return ("refused", error.code)
        return ("stopped", stop_after_steps(stream, steps))

    def answer(self) -> Outcome:
        try:
            result = self.service.result(self.service.answer(
                self.thread_id, AnswerEscalation(reply="A person here: it is sorted.")))
        except ServiceError as error:
            return ("refused", error.code)
        return ("answered", result.reply, result.active_agent)

    def fork(self, checkpoint: RunnableConfig, text: str, message_id: str) -> None:
        """Time travel: a new message run from an older checkpoint (Studio's fork), in place."""
        self.client_ids.add(message_id)
        run(self.service, self.graph, checkpoint, user(text, message_id))

    def studio(self, text: str, message_id: str, how: str) -> Outcome:
        """A user's message Studio adds: written as START or as an agent, or run straight on the graph."""
        self.client_ids.add(message_id)
        try:
            if how == "run":
                run(self.service, self.graph, config(self.thread_id), user(text, message_id))
            else:
                self.service.portal.call(partial(self.graph.aupdate_state, config(self.thread_id),
                                                 user(text, message_id), as_node=how))
        except Exception as error:  # Studio refused it: both twins alike
            return ("studio refused", type(error).__name__)
        return ("studio", how)

    def ended(self) -> list[RunnableConfig]:
        """The thread's checkpoints where a turn ended, newest first."""
        return ended_checkpoints(self.service, self.graph, self.thread_id)


def seen(found: SentBefore | None) -> str:
    if found is None:
        return "nothing (a new message)"
    return (f"{found.message.text!r} followed by {[m.text[:30] for m in found.after]} "
            f"(latest={found.latest})")


def kind(outcome: Outcome) -> str:
    """new, resent, or the refusal's code."""
    if outcome[0] == "answered":
        return "resent" if outcome[1] else "new"
    return str(outcome[1])


Script = Callable[[Side], list[Outcome]]


def counting_replies(messages: list[Any]) -> AIMessage:
    """A reply that tells which turn it answers: the last user text and how many messages the model saw.
    Stateless, so twin threads get the same replies."""
    last = [m for m in messages if isinstance(m, HumanMessage)][-1]
    return AIMessage(f"About {last.text!r}, having seen {len(messages)} messages.")


def twin_services(url: str, stack: ExitStack, **service: Any) -> tuple[Side, Side]:
    """Two services over ``url``, each with its store apart (its own registry, journal and back office, so
    ticket numbers and refunds match turn for turn); their threads registered with the index and without."""
    service.setdefault("model", OfflineChatModel())
    sides = []
    for indexed in (True, False):
        stores: list[CountedApart] = []

        def apart(store: Any, stores: list[CountedApart] = stores) -> CountedApart:
            stores.append(CountedApart(store, f"sent-twin-{uuid.uuid4().hex}"))
            return stores[0]

        opened = stack.enter_context(serving(url, store=apart, **service))
        sides.append(Side(opened, stores[0], indexed))
    return sides[0], sides[1]


def compare(indexed: Side, scanned: Side, script: Script) -> list[Outcome]:
    """Run ``script`` on both twins: the same outcome for every request, the same journal, and the twin
    without the index never read it. Returns the outcomes."""
    answers = [script(indexed), script(scanned)]
    for number, (with_index, by_scan) in enumerate(zip(*answers, strict=True)):
        assert with_index == by_scan, f"request {number}: with the index {with_index}, by the scan {by_scan}"
    assert indexed.journal() == scanned.journal(), "the index changed what the thread keeps"
    assert scanned.sent_reads == 0, "the twin registered without the index read it: not the old path"
    return answers[0]


def both_ways(url: str, script: Script, **service: Any) -> list[Outcome]:
    with ExitStack() as stack:
        indexed, scanned = twin_services(url, stack, **service)
        return compare(indexed, scanned, script)


@pytest.fixture(params=["memory", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    return {"memory": "memory", "postgres": POSTGRES_URL}[request.param]


# --- odd ids, and an id another thread used -----------------------------------------------------------

@pytest.mark.parametrize("message_id", [*ODD_IDS, *REFUSED_IDS, ""],
                         ids=[repr(i)[:24] for i in (*ODD_IDS, *REFUSED_IDS, "")])
def test_an_odd_message_id_is_told_new_or_resent_as_the_scan_tells_it(url: str, message_id: str) -> None:
    """Sent, resent (same text, then another), used on another thread of the same service with another
    text (the index is the thread's own), resent there, and resent once more on the first thread."""
    def script(side: Side) -> list[Outcome]:
        other = side.start()
        return [side.send("First text, about my plan.", message_id),
                side.send("Second message.", "plain-2"),
                side.send("First text, about my plan.", message_id),
                side.send("An edited text.", message_id),
                side.send("The other thread's text.", message_id, other),
                side.send("The other thread's text.", message_id, other),
                side.send("First text, about my plan.", message_id)]

    kinds = [kind(o) for o in both_ways(url, script)]
    if message_id in REFUSED_IDS:
        assert kinds == ["invalid_request", "new", *["invalid_request"] * 5]
    elif message_id == "":  # no id: the message is given one, so it is never found again
        assert kinds == ["new"] * 7
    else:
        assert kinds == ["new", "new", "resent", "message_id_reused", "new", "resent", "resent"]


# --- the lookback's edge -------------------------------------------------------------------------------

def test_the_lookback_ends_where_the_scan_ends_it(url: str) -> None:
    """A message exactly ``LOOKBACK`` positions back is still found, one more position back it is new;
    every turn, every message near the edge is looked up both ways. Turns of two, five and six messages
    put user messages at both parities of the distance."""
    texts = [AFTER, PLAN, AFTER, HELLO, TECHNICAL, AFTER, "Thanks, noted."]

    def script(side: Side) -> list[Outcome]:
        positions: dict[str, int] = {}
        text_of: dict[str, str] = {}
        outcomes: list[Outcome] = []
        checked: set[int] = set()
        edges: dict[int, Outcome] = {}
        near = set(range(LOOKBACK - 2, LOOKBACK + 3))
        n = 0
        while len(edges) < 2 or not near <= checked:
            upto = side.transcript_len()
            for message_id, at in positions.items():
                if LOOKBACK - 4 <= upto - at <= LOOKBACK + 4:
                    found = side.agree(message_id)
                    assert (found is not None) == (upto - at <= LOOKBACK)
                    checked.add(upto - at)
            edge = next(((d, i) for i, at in positions.items() if (d := upto - at) in (LOOKBACK, LOOKBACK + 1)
                         and d not in edges), None)
            if edge is not None:  # resent right at the edge: found at 50, new at 51 (stored again)
                distance, message_id = edge
                edges[distance] = side.send(text_of[message_id], message_id)
                outcomes.append(edges[distance])
                if kind(edges[distance]) == "new":
                    positions[message_id] = upto
                continue
            message_id, text = f"m-{n}", f"{texts[n % len(texts)]} ({n})"
            positions[message_id], text_of[message_id] = upto, text
            outcomes.append(side.send(text, message_id))
            n += 1
            assert n < 80, f"the conversation never put a message at the edge: {sorted(checked)}"
        assert kind(edges[LOOKBACK]) == "resent" and kind(edges[LOOKBACK + 1]) == "new"
        return outcomes

    both_ways(url, script)


# --- time travel ---------------------------------------------------------------------------------------

def test_a_fork_in_place_then_resends_of_either_branch(url: str) -> None:
    """A new message run from the first turn's end writes over what followed: the abandoned branch's
    messages are new again (one's position now holds the fork's message, another's lies past the fork's
    history), the shared first turn and the fork's own message are resent; then Studio edits an older
    checkpoint of the fork (no run: the latest row's history is shorter) and everything is resent again."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send(HELLO, "m-0"), side.send(TECHNICAL, "m-1"), side.send(PLAN, "m-2"),
               side.send(AFTER, "m-3")]
        first_turn = side.ended()[-1]
        side.fork(first_turn, "What is my balance?", "fork-1")
        out += [side.send(AFTER, "m-3"),  # past the fork's history
                side.send(HELLO, "m-0"),
                side.send("What is my balance?", "fork-1"),
                side.send("An edited text.", "fork-1"),
                side.send(TECHNICAL, "m-1"),  # its position holds the fork's message now
                side.send(PLAN, "m-2")]
        before_last = side.ended()[1]
        side.service.portal.call(partial(side.graph.aupdate_state, before_last,
                                         {"messages": [AIMessage("An operator's note.", name="general_support")]},
                                         as_node="general_support"))
        out += [side.send(text, message_id) for text, message_id in
                [(PLAN, "m-2"), (TECHNICAL, "m-1"), (AFTER, "m-3"), ("What is my balance?", "fork-1"),
                 (HELLO, "m-0"), ("Something new.", "m-4")]]
        return out

    kinds = [kind(o) for o in both_ways(url, script)]
    assert kinds[:10] == ["new", "new", "new", "new", "new", "resent", "resent", "message_id_reused",
                          "new", "new"]


def test_an_id_whose_later_copy_a_fork_wrote_over_is_found_where_the_scan_finds_it(url: str) -> None:
    """Studio runs a message the thread stored already (out of the window) again, so the index points at
    that second copy; a fork from just before it writes over that position. The index's position now
    holds the fork's message: the lookup must fall back to the scan, which finds the first copy."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send("Hello there.", "m-1")]
        out += [side.send(f"Thanks, noted {n}.", f"t-{n}") for n in range(7)]
        before_the_copy = side.ended()[0]
        side.studio("Hello there.", "m-1", "run")
        side.fork(before_the_copy, "A question from the fork.", "fork-1")
        out += [side.send("Hello there.", "m-1"), side.send("Another text.", "m-1")]
        return out

    kinds = [kind(o) for o in both_ways(url, script, model=ScriptedChatModel(default=counting_replies))]
    assert kinds[-2:] == ["resent", "message_id_reused"]


def test_a_turn_run_again_from_any_of_its_checkpoints_then_resends(url: str) -> None:
    """Time travel into the middle of a handoff turn: every checkpoint with a next node run again to the
    end, each time followed by resends of every message and a new one."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send(HELLO, "m-0"), side.send(TECHNICAL, "m-1")]

        async def history() -> list[RunnableConfig]:
            return [s.config async for s in side.graph.aget_state_history(config(side.thread_id)) if s.next]
        midway = side.service.portal.call(history)
        assert len(midway) >= 3
        for number, checkpoint in enumerate(midway):
            run(side.service, side.graph, checkpoint, None)
            out += [side.send(HELLO, "m-0"), side.send(TECHNICAL, "m-1"), side.send("Edited.", "m-1"),
                    side.send(f"{AFTER} ({number})", f"after-{number}")]
        return out

    both_ways(url, script)


# --- a turn left unfinished, or archived with its checkpoint lost --------------------------------------

@pytest.mark.parametrize("steps", [1, 2, 3])
@pytest.mark.parametrize("then", ["resent", "edited", "another message first"])
def test_a_resend_after_a_turn_left_unfinished(url: str, steps: int, then: str) -> None:
    """A handoff turn whose worker died after its first, second or third step, then the same message sent
    again (completing the turn), with another text, or after another message."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send(HELLO, "m-0"), side.stop(TECHNICAL, "m-1", steps)]
        if then == "edited":
            out.append(side.send("An edited text.", "m-1"))
        elif then == "another message first":
            out.append(side.send(AFTER, "m-2"))
        out += [side.send(TECHNICAL, "m-1"), side.send(TECHNICAL, "m-1"), side.send(HELLO, "m-0"),
                side.send("An edited text.", "m-1")]
        return out

    kinds = [kind(o) for o in both_ways(url, script)]
    assert kinds[-3:] == ["resent", "resent", "message_id_reused"]


@pytest.mark.parametrize("text", [TECHNICAL, "Another text the lost step held."])
def test_a_message_archived_by_a_step_whose_checkpoint_was_lost(url: str, text: str) -> None:
    """A worker stored a turn's first step in the journal (the message and its index entry) and died before
    the checkpoint: the journal holds the message past the thread's length. Resent, it is new (the
    checkpoint never had it), stored over the lost step, and resent after that."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send(HELLO, "m-0")]
        journal = Journal(side.graph.store, side.thread_id, deferred=True)
        upto = side.transcript_len()
        journal.append_messages(upto, [HumanMessage(text, id="lost-1"), AIMessage("A reply never saved.")])
        side.service.portal.call(journal.aflush)
        out += [side.send(TECHNICAL, "lost-1"), side.send(TECHNICAL, "lost-1"), side.send("Edited.", "lost-1")]
        return out

    kinds = [kind(o) for o in both_ways(url, script)]
    assert kinds == ["new", "new", "resent", "message_id_reused"]


# --- user messages Studio adds -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["__start__", "general_support", "run"])
def test_a_users_message_studio_adds_is_resent_as_before(url: str, how: str) -> None:
    """Studio adds a user's message (as START, as an agent, or by running the graph); resent while in
    the window, then again after it left the window, with its text and with another."""
    def script(side: Side) -> list[Outcome]:
        out = [side.send(HELLO, "m-0"), side.studio(STUDIO_TEXT, "studio-1", how),
               side.send(STUDIO_TEXT, "studio-1"), side.send("Another text.", "studio-1")]
        out += [side.send(f"Thanks, noted {n}.", f"t-{n}") for n in range(7)]
        out += [side.send(STUDIO_TEXT, "studio-1"), side.send("Another text.", "studio-1"),
                side.send(HELLO, "m-0")]
        return out

    kinds = [kind(o) for o in both_ways(url, script)]
    assert kinds[-3:] == ["resent", "message_id_reused", "resent"]


# --- random conversations --------------------------------------------------------------------------------

TEXTS = (HELLO, TECHNICAL, PLAN, AFTER, WANTS_A_PERSON, "Thanks. Also I was charged twice on invoice INV-2002.")
FOREIGN_IDS = ("m-1", "../x", "caf\u00e9", "0")
"""Ids the other thread of each service used first (with its own texts)."""

Action = tuple[Any, ...]
SENDS = st.tuples(st.just("send"), st.sampled_from(TEXTS),
                  st.sampled_from((None, "", *ODD_IDS[:12], *REFUSED_IDS[:2])))
RESENDS = st.tuples(st.just("resend"), st.integers(0, 40), st.booleans())
OPS = st.one_of(
    SENDS, SENDS, RESENDS, RESENDS,  # twice as likely as the rest
    st.tuples(st.just("foreign"), st.sampled_from(FOREIGN_IDS), st.booleans()),
    st.tuples(st.just("stop"), st.sampled_from(TEXTS), st.integers(1, 3)),
    st.tuples(st.just("fork"), st.integers(0, 40), st.sampled_from(TEXTS)),
    st.tuples(st.just("studio"), st.sampled_from(TEXTS), st.sampled_from(("__start__", "general_support", "run"))),
    st.tuples(st.just("answer")),
)
"""A request (a new message with an odd id, an earlier message resent with its text or another, the
other thread's id, a turn whose worker dies), an operator's time travel or added message, or a person's
answer. Studio's messages and forks take fresh ids: one id stored twice is a case of its own (xfail)."""


def played(ops: list[Action], foreign: str) -> Script:
    """The script of a conversation of ``ops`` on a new thread of the side; ``foreign`` is the other
    thread's, which every id of ``FOREIGN_IDS`` was sent on first."""
    def script(side: Side) -> list[Outcome]:
        side.thread_id = side.start()
        sent: list[tuple[str, str]] = [(HELLO, "m-start")]
        out: list[Outcome] = [side.send(HELLO, "m-start")]
        for number, op in enumerate(ops):
            fresh = f"fresh-{number}"
            match op:
                case ("send", text, message_id):
                    out.append(side.send(text, message_id))
                    if message_id:
                        sent.append((text, message_id))
                case ("resend", k, same) if sent:
                    text, message_id = sent[k % len(sent)]
                    out.append(side.send(text if same else f"{text} (edited)", message_id))
                case ("foreign", message_id, again):
                    if again:  # the other thread's own resend: this thread's use must not change it
                        out.append(side.send(f"The other thread's {message_id}.", message_id, foreign))
                    else:
                        out.append(side.send(f"The other thread's {message_id}.", message_id))
                        sent.append((f"The other thread's {message_id}.", message_id))
                case ("stop", text, steps):
                    out.append(side.stop(text, fresh, steps))
                    sent.append((text, fresh))
                case ("fork", k, text):
                    ended = side.ended()
                    if ended:
                        side.fork(ended[k % len(ended)], text, fresh)
                        sent.append((text, fresh))
                    out.append(("fork", len(ended)))
                case ("studio", text, how):
                    out.append(side.studio(text, fresh, how))
                    sent.append((text, fresh))
                case ("answer",):
                    out.append(side.answer())
                case _:
                    out.append(("nothing to resend",))
        for text, message_id in sent:  # at the end, every message resent once more
            out.append(side.send(text, message_id))
        return out

    return script


def test_random_conversations_are_answered_as_the_scan_answers_them(url: str) -> None:
    with ExitStack() as stack:
        indexed, scanned = twin_services(url, stack)
        foreign: dict[bool, str] = {}
        for side in (indexed, scanned):
            foreign[side.indexed] = side.start()
            for message_id in FOREIGN_IDS:
                side.send(f"The other thread's {message_id}.", message_id, foreign[side.indexed])

        @settings(max_examples=20 if url == "memory" else 10, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(OPS, min_size=3, max_size=10))
        def conversation(ops: list[Action]) -> None:
            answers = [played(ops, foreign[side.indexed])(side) for side in (indexed, scanned)]
            for number, (with_index, by_scan) in enumerate(zip(*answers, strict=True)):
                assert with_index == by_scan, f"request {number}: with the index {with_index}, by the scan {by_scan}"
            assert indexed.journal() == scanned.journal()

        conversation()
        assert scanned.sent_reads == 0 and indexed.sent_reads > 0


# --- the cases the attack found: two now answered as the scan does, two known differences (xfail) ---

@pytest.mark.xfail(strict=True, reason=(
    "the index keeps the position an id was LAST stored at, the scan finds the FIRST one within the "
    "lookback: a user message Studio runs again with an id the thread already stored (out of the window, "
    "within 50 positions) is stored twice, and a resend replays the second turn's reply with the index, "
    "the first one's with the scan"))
def test_an_id_studio_stores_a_second_time_is_resent_as_before(url: str) -> None:
    def script(side: Side) -> list[Outcome]:
        out = [side.send("Hello there.", "m-1")]
        out += [side.send(f"Thanks, noted {n}.", f"t-{n}") for n in range(7)]  # m-1 leaves the window
        side.studio("Hello there.", "m-1", "run")
        out += [side.send("Anything else?", "t-7"), side.send("Hello there.", "m-1")]
        return out

    both_ways(url, script, model=ScriptedChatModel(default=counting_replies))


def test_an_id_stored_twice_then_a_fork_between_the_copies_is_resent_as_before(url: str) -> None:
    def script(side: Side) -> list[Outcome]:
        out = [side.send("Hello there.", "m-1")]
        out += [side.send(f"Thanks, noted {n}.", f"t-{n}") for n in range(26)]  # 54 positions
        out.append(side.send("Hello there.", "m-1"))  # 54 positions back: new, stored again at 54
        fork_at = next(c for c in side.ended() if side.service.portal.call(
            side.graph.aget_state, c).values.get("transcript_len") == 20)
        side.fork(fork_at, "A question from the fork.", "fork-1")
        out += [side.send("Another text.", "m-1"), side.send("Hello there.", "m-1")]
        return out

    both_ways(url, script, model=ScriptedChatModel(default=counting_replies))


def test_a_message_stored_with_the_empty_id_is_resent_as_before(url: str) -> None:
    def script(side: Side) -> list[Outcome]:
        out = [side.send("Hello there.", "m-1"), side.studio(STUDIO_TEXT, "", "run")]
        out += [side.send(STUDIO_TEXT, ""), side.send("Another text.", "")]
        return out

    both_ways(url, script, model=ScriptedChatModel(default=counting_replies))


class KeepsNoIndex(BaseStore):
    """The store as a worker of the previous release writes it: its journal stores messages and no
    ``SENT`` entry (the same database, the same namespaces)."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    @staticmethod
    def _kept(ops: Iterable[Op]) -> list[Op]:
        return [op for op in ops if not (isinstance(op, PutOp) and op.namespace[:2] == ("handoff", SENT))]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.store.batch(self._kept(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self.store.abatch(self._kept(ops))


@pytest.mark.xfail(strict=True, reason=(
    "a rolling upgrade: a thread a new worker registers says sent_index, but a worker still on the previous "
    "release may run its turns, archiving messages with no index entry; a client's retry that reaches a new "
    "worker is then told new by the index and its turn runs again (a second reply, its tools called again) where the scan finds it resent"))
def test_a_turn_a_previous_release_worker_ran_on_a_thread_a_new_worker_registered_is_resent_as_before(
    url: str
) -> None:
    with start_blocking_portal() as portal, \
            portal.wrap_async_context_manager(open_service_persistence(url)) as persistence:
        store = Apart(persistence.store, f"sent-release-{uuid.uuid4().hex}")
        new, previous = (BlockingHandoffService(portal, HandoffService(
            Persistence(persistence.checkpointer, kept, persistence.url), model=OfflineChatModel()))
            for kept in (store, KeepsNoIndex(store)))
        try:
            thread_id = new.start_thread().thread_id
            first = previous.result(previous.send(thread_id, HELLO, message_id="m-1"))
            again = new.result(new.send(thread_id, HELLO, message_id="m-1"))  # the client's retry
            assert again.duplicate and again.reply == first.reply
        finally:
            portal.call(new.service.close)
            portal.call(previous.service.close)
