"""One side of a conversation that outlives its process (see tests/test_persistence_resume.py).

Run as ``python -m tests.support.resume_worker PHASE URL THREAD`` with URL
``default`` (the CLI's SQLite file in ``HANDOFF_DATA_DIR``) or a
``postgresql://`` URL. Both phases use the offline model and print one JSON line:

- ``start`` plays two user turns (General Support -> Technical Specialist),
  prints what it holds, and then waits to be killed;
- ``resume`` reopens the same thread in a fresh process, prints what it finds
  before doing anything, sends one more message and prints the reply and the
  prompt the model was given.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from langchain_core.messages import BaseMessage

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.offline import OfflineChatModel
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession
from handoff.graphs.settings import StorageSettings

FIRST = "Hi, this is Dana, account ACC-1001, postcode 90210. Call me back on 555-0199 if we get cut off."
SECOND = "My internet keeps dropping every evening."
AFTER_RESTART = "What do you have on file for me?"


class RecordingOfflineModel(OfflineChatModel):
    """The offline model, keeping every prompt it was sent."""

    prompts: list[list[BaseMessage]] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def snapshot(session: HandoffSession) -> dict[str, Any]:
    """What must survive the restart, as plain JSON."""
    result = session.result()
    return {
        "thread_id": session.thread_id,
        "active_agent": result.active_agent,
        "case_file": result.case_file,
        "handoffs": [r.model_dump(mode="json") for r in result.handoffs],
    }


def main() -> None:
    phase, url, thread = sys.argv[1:4]
    url = StorageSettings().db_url if url == "default" else url
    model = RecordingOfflineModel(prompts=[])
    with open_persistence(url) as persistence:
        graph = build_customer_service_graph(model=model, office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        session = HandoffSession(graph, thread)
        if phase == "start":
            session.send(FIRST)
            session.send(SECOND)
            print(json.dumps(snapshot(session)), flush=True)
            time.sleep(600)  # the test kills this process with SIGKILL
            raise SystemExit("start phase was not killed")
        before = snapshot(session)
        reply = session.send(AFTER_RESTART)
        prompt = model.prompts[-1] if model.prompts else []
        print(json.dumps({
            "before": before,
            "reply": reply.reply,
            "answered_by": reply.active_agent,
            "prompt": [{"type": m.type, "content": str(m.content)} for m in prompt],
        }), flush=True)


if __name__ == "__main__":
    main()
