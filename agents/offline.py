"""The offline model: deterministic, labelled, and tool-calling like a real one.

It needs no key and no network. It reads the same system prompt, messages and bound tools a real
model gets, and acts like a careful agent, by plain rules:

1. a customer who asks for a person gets one (``transfer_to_human``), judged by wording and meaning,
   not by a word such as "manager" said in passing (agents/person_request.py);
2. it calls its own tools whose "Use when:" words the message stands for (agents/offline_lexicon.py
   puts everyday phrases into those plain words);
3. it hands off with a ``transfer_to_<agent>`` tool when the message is for a colleague, by the
   colleague's topics or, failing those, by meaning with the offline embedder
   (agents/offline_meaning.py);
4. when that handoff needs a field the conversation does not hold, it asks for exactly that field by
   its human name; when the field arrives it carries on with the earlier request, which it reads back
   from the transcript (so it survives turns and restarts with no state of its own);
5. otherwise it answers from its tool results and says what happens next (agents/offline_replies.py):
   an id the systems do not know becomes a question, a refused handoff is explained without internal
   error text, and the customer's words are never echoed back.

Every answer starts with ``[offline model]`` and says that no LLM was called.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from handoff.agents.offline_fields import Sources, fill, not_found, stems
from handoff.agents.offline_meaning import HUMAN, Choice, colleague_for, own_tool_by_meaning, own_tools_for
from handoff.agents.offline_reading import (
    TRANSFER_PREFIX,
    Reading,
    description_of,
    read,
    target_of,
    title_of,
)
from handoff.agents.offline_replies import OFFLINE_LABEL, Ask, answer, asked_before
from handoff.agents.offline_stream import stream_chunks
from handoff.agents.person_request import asks_for_a_person
from handoff.agents.tool_calling_fake import ToolCallingFakeModel

__all__ = ["OFFLINE_LABEL", "TRANSFER_PREFIX", "OfflineChatModel", "decide"]

PERSON_REASON = "The customer asked to talk to a person."
NOT_FOUND_SAID = re.compile(r"I can't find [\w ]+? (\S+) in our records")
HANDED_BY = re.compile(r"^From (?P<title>.+?) \(\w+ handoff\)")
REFUSED_NOTICE = re.compile(r"Your handoff to (?P<target>\w+) was refused: (?P<why>.*)")
FIELD_REQUIRED = re.compile(r"\b([a-z][a-z0-9_]*): Field required")


class OfflineChatModel(ToolCallingFakeModel):
    """A deterministic stand-in for a chat model that says what it is."""

    label: ClassVar[str] = OFFLINE_LABEL

    @property
    def _llm_type(self) -> str:
        return "handoff-offline"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _result(messages, tools)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # The answer is a fraction of a millisecond of CPU and never waits (in a thread it would hold
        # the GIL all the same), so it is computed on the event loop: BaseChatModel's default sends
        # each call to a thread and back, which costs more than the answer. A subclass
        # that overrides ``_generate`` (to hold, fail or record a call) keeps the default, so its
        # override runs on the async path too, and a blocking one still blocks a thread, not the loop.
        if type(self)._generate is not OfflineChatModel._generate:
            return await super()._agenerate(messages, stop, run_manager, tools=tools, **kwargs)
        return _result(messages, tools)

    # Streamed when a caller streams (LangGraph's ``stream_mode="messages"``): the same answer, in chunks.
    # Both paths go through ``_generate``/``_agenerate``, so a subclass that overrides those (to hold,
    # fail or record a call) is honoured whether or not the call streams.
    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, None, **kwargs)
        yield from stream_chunks(result.generations[0].message)  # type: ignore[arg-type]

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        result = await self._agenerate(messages, stop, None, **kwargs)
        for chunk in stream_chunks(result.generations[0].message):  # type: ignore[arg-type]
            yield chunk


def _result(messages: list[BaseMessage], tools: list[dict[str, Any]] | None) -> ChatResult:
    """``decide``'s answer as a chat result, with the usage a real model reports (estimated)."""
    message = decide(messages, [t["function"] for t in tools or []])
    prompt_tokens = count_tokens_approximately(messages)
    output_tokens = count_tokens_approximately([message])
    message.usage_metadata = {
        "input_tokens": prompt_tokens,
        "output_tokens": output_tokens,
        "total_tokens": prompt_tokens + output_tokens,
    }
    return ChatResult(generations=[ChatGeneration(message=message)])


def decide(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage:
    """The offline model's whole policy, as a pure function of the prompt and the bound tools."""
    reading = read(messages, tools)
    step = _settle(reading) if reading.transferred else _act(reading)
    if isinstance(step, AIMessage):
        return step
    return AIMessage(content=answer(reading, ask=step), name=reading.me or None)


def _act(reading: Reading) -> AIMessage | Ask | None:
    """A tool call to make, a field to ask for, or None (just answer)."""
    person = next((t for t in reading.transfers if target_of(t) == HUMAN), None)
    if person is not None and asks_for_a_person(reading.user):
        return _calls(reading, fill(person, _sources(reading, reading.user, reason=PERSON_REASON)).call(reading.user))

    # A receiver carries on with what it was handed ("my wifi keeps cutting out") as well as this message.
    request = f"{reading.user} {reading.handed_request}".strip()
    sources = _sources(reading, request)
    calls = [filled.call(reading.user) for tool in own_tools_for(reading, request)
             if (filled := fill(tool, sources)).complete]
    if calls:
        return _calls(reading, *calls)

    # A colleague that just handed this customer's message over judged it to be for this agent: only its
    # words, not a closeness of meaning, move it on again (and never straight back).
    exclude = _handed_by(reading) if reading.just_received else frozenset()
    judged = reading.handed_request.startswith("User said:")
    choice = colleague_for(reading, reading.user, exclude=exclude, by_meaning=not judged)
    about = reading.user
    if choice is None or choice.by == "meaning":
        tool = own_tool_by_meaning(reading, request, floor=choice.closeness if choice else 0.0)
        if tool is not None and (filled := fill(tool, sources)).complete:
            return _calls(reading, filled.call(reading.user))
    if choice is None and not reading.just_received:
        choice, about = _waiting(reading)
    if choice is None:
        return _refused_by_rule(reading)
    filled = fill(choice.tool, _sources(reading, about, reason=choice.reason, handoff=True))
    if filled.complete:
        return _calls(reading, filled.call(about))
    helper = _producer(reading, filled.missing, _sources(reading, about))
    if helper is not None:
        return _calls(reading, helper)
    if reading.tool_texts() and not not_found(reading.tool_texts()):
        return None  # this turn's results come first; the case file holds them by the next turn
    return Ask(choice.tool, filled.missing)


def _calls(reading: Reading, *calls: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(calls), name=reading.me or None)


def _refused_by_rule(reading: Reading) -> Ask | None:
    """A rule's handoff the gate refused for missing fields (the NOTICE): ask for exactly those."""
    found = REFUSED_NOTICE.search(reading.notice)
    if found is None:
        return None
    transfer = next((t for t in reading.transfers if target_of(t) == found.group("target")), None)
    fields = [m.group(1) for m in FIELD_REQUIRED.finditer(found.group("why"))]
    known = [f for f in fields if transfer and f in transfer.get("parameters", {}).get("properties", {})]
    if transfer is None or not known:
        return None
    return Ask(transfer, tuple(dict.fromkeys(known)))


def _settle(reading: Reading) -> AIMessage | None:
    """After a refused handoff: run this agent's own tool that settles the refusal's reason, if one can
    run now ("the lead is not qualified" -> qualify_lead); otherwise just answer."""
    why = " ".join(text for c in reading.my_calls if c["name"].startswith(TRANSFER_PREFIX)
                   and (text := reading.result_of(c)) and "precondition_failed" in text).lower()
    if not why:
        return None
    sources = _sources(reading, reading.user)
    for tool in reading.own:
        if tool["name"] in reading.called:
            continue
        words = {w[:6] for w in re.findall(r"[a-z]{5,}", f"{tool['name']} {description_of(tool)}".lower())}
        if any(w in why for w in words) and (filled := fill(tool, sources)).complete:
            return _calls(reading, filled.call(reading.user))
    return None


def _producer(reading: Reading, missing: tuple[str, ...], sources: Sources) -> dict[str, Any] | None:
    """A call of this agent's own tool that would produce a missing handoff field (a designer chooses the
    plan the implementer needs before asking anyone for it), if one can be made now."""
    for tool in reading.own:
        if tool["name"] in reading.called:
            continue
        described = set(re.findall(r"[a-z]{4,}", description_of(tool).lower()))
        if not any(stem in described for field in missing for stem in stems(field)):
            continue
        filled = fill(tool, sources)
        if filled.complete:
            return filled.call(reading.user)
    return None


def _sources(reading: Reading, about: str, *, reason: str | None = None, handoff: bool = False) -> Sources:
    """Where arguments come from. Only a handoff takes ids from this turn's tool results (the plan the
    designer just chose); an own tool acts on what the customer said or the case file holds, never on
    an id it merely saw in a listing."""
    return Sources(case=reading.case, user=about, history=reading.history, current=reading.user,
                   found=" ".join(reading.tool_texts()) if handoff else "", reason=reason,
                   summary=f"User said: {about[:300]}", refused_ids=_refused_ids(reading))


def _refused_ids(reading: Reading) -> frozenset[str]:
    """Ids a tool said do not exist, this turn or (as the offline model told the customer) earlier."""
    now = {value for _, value in not_found(reading.tool_texts())}
    said = {m.group(1) for e in reading.exchanges if e.reply for m in NOT_FOUND_SAID.finditer(e.reply)}
    return frozenset(now | said) - _given_again(reading)


def _given_again(reading: Reading) -> set[str]:
    """Ids the customer repeats in this very message: looked up again rather than refused unseen."""
    if reading.tool_texts():
        return set()
    return {token.upper() for token in re.findall(r"\b[A-Za-z]{2,5}-\d{2,}\b", reading.user)}


def _handed_by(reading: Reading) -> frozenset[str]:
    """The colleague that just handed this conversation over: not handed straight back."""
    found = HANDED_BY.match(reading.briefing)
    if not found:
        return frozenset()
    return frozenset(target_of(t) for t in reading.transfers if title_of(t) == found.group("title"))


def _waiting(reading: Reading) -> tuple[Choice | None, str]:
    """The request this agent asked a field for and is still waiting on, read back from the transcript.

    Walks back over this agent's latest replies while they ask for a colleague's fields; the request is
    the latest customer message in that run that is for the colleague (else the run's first message).
    """
    run = []
    title = None
    for exchange in reversed(reading.exchanges):
        asked = asked_before(exchange.reply or "")
        if asked is None or (title is not None and asked != title):
            break
        title = asked
        run.append(exchange.user)
    tool = next((t for t in reading.transfers if title is not None and title_of(t) == title), None)
    if tool is None:
        return None, reading.user
    for text in run:
        choice = colleague_for(reading, text)
        if choice is not None and choice.tool["name"] == tool["name"]:
            return choice, text
    return Choice(tool=tool, words=(), closeness=0.0, by="transcript"), run[-1]
