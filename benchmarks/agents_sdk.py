"""The OpenAI Agents SDK as a benchmark peer: three agents with handoffs, a ``SQLiteSession``, no network.

The SDK's ``Model`` interface is implemented by a scripted model that turns the SDK's input items
into LangChain messages and answers with the same reply policy as every other peer
(benchmarks/conversation.py), so the SDK plays the same conversation with the same replies.
Tracing is off for the run: nothing leaves the process.

The SDK installs a top-level ``agents`` package, and ``python -m benchmarks...`` puts the
repository root, which holds this project's own ``agents/`` folder, first on ``sys.path``; so the
SDK is loaded from its installed location (``_sdk``), never by a plain ``import agents``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from benchmarks.conversation import CYCLE, prompt_chars, reply_policy
from handoff.agents.prompt_markers import AGENT_MARKER


def _sdk() -> ModuleType:
    """The OpenAI Agents SDK's ``agents`` package, loaded from where pip installed it."""
    loaded = sys.modules.get("agents")
    if loaded is not None and hasattr(loaded, "Runner"):
        return loaded
    folder = Path(str(metadata.distribution("openai-agents").locate_file("agents")))
    spec = importlib.util.spec_from_file_location("agents", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"the OpenAI Agents SDK is not where pip put it ({folder})")
    module = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = module
    spec.loader.exec_module(module)
    return module


def to_messages(instructions: str | None, items: str | Sequence[dict[str, Any]]) -> list[BaseMessage]:
    """The SDK's model input (Responses-format items) as LangChain messages."""
    out: list[BaseMessage] = [SystemMessage(instructions or "")]
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items:
        kind = item.get("type", "message")
        if kind == "function_call":
            out.append(AIMessage(content="", tool_calls=[{"name": item["name"], "id": item["call_id"],
                                                          "args": json.loads(item["arguments"] or "{}")}]))
        elif kind == "function_call_output":
            out.append(ToolMessage(content=str(item["output"]), tool_call_id=item["call_id"]))
        elif kind == "message":
            content = item["content"]
            text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
            out.append(HumanMessage(text) if item["role"] == "user" else AIMessage(text))
    return out


@dataclass
class ScriptedSdkModel:
    """Builds the SDK ``Model`` whose replies come from the shared reply policy."""

    chars: list[int] = field(default_factory=list)

    def build(self) -> Any:
        sdk = _sdk()
        from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

        policy = reply_policy(typed_payloads=False)
        chars = self.chars

        class Scripted(sdk.Model):  # type: ignore[name-defined,misc]
            async def get_response(self, system_instructions: str | None, input: Any, *args: Any,
                                   **kwargs: Any) -> Any:
                messages = to_messages(system_instructions, input)
                chars.append(prompt_chars(messages))
                reply = policy(messages)
                output: list[Any] = [
                    ResponseFunctionToolCall(type="function_call", name=call["name"], call_id=call["id"],
                                             arguments=json.dumps(call["args"]), id=f"fc_{call['id']}")
                    for call in reply.tool_calls
                ] or [ResponseOutputMessage(
                    type="message", id=f"msg_{len(chars)}", role="assistant", status="completed",
                    content=[ResponseOutputText(type="output_text", text=str(reply.content), annotations=[])],
                )]
                return sdk.ModelResponse(output=output, usage=sdk.Usage(), response_id=None)

            def stream_response(self, *args: Any, **kwargs: Any) -> Any:
                raise NotImplementedError("the benchmark does not stream")

        return Scripted()


@dataclass
class SdkSide:
    """The SDK peer, open; the same shape as benchmarks.peers.Side."""

    runner: Any
    session: Any
    agent: Any
    config: Any
    model: ScriptedSdkModel

    def send(self, text: str) -> None:
        # The SDK leaves choosing the next turn's agent to the application: the last one answers.
        self.agent = self.runner.run_sync(self.agent, text, session=self.session, run_config=self.config).last_agent

    def drain(self) -> list[int]:
        chars = list(self.model.chars)
        self.model.chars.clear()
        return chars


@contextmanager
def agents_sdk(db: Path) -> Iterator[SdkSide]:
    """General, Technical and Billing as SDK agents, each able to hand to the other two, on a SQLiteSession."""
    from handoff.agents.customer_service.specialists import customer_service_agents

    sdk = _sdk()
    model = ScriptedSdkModel()
    scripted = model.build()
    agents = {spec.name: sdk.Agent(name=spec.name, model=scripted, handoff_description=spec.description,
                                   instructions=f"{spec.instructions}\n\n{AGENT_MARKER} {spec.name}")
              for spec in customer_service_agents()}
    for name, agent in agents.items():
        agent.handoffs = [agents[target] for target in CYCLE if target != name]
    session = sdk.SQLiteSession("bench", db)
    try:
        yield SdkSide(sdk.Runner, session, agents[CYCLE[0]], sdk.RunConfig(tracing_disabled=True), model)
    finally:
        session.close()
