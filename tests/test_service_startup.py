"""A worker compiles every graph it serves while it starts: a graph that cannot be built stops the
start (instead of failing its first conversation), and no turn waits on a compile."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.build_errors import GraphBuildError
from handoff.graphs.registry import GRAPHS
from handoff.service.app import create_app


def test_every_graph_is_compiled_before_the_first_request() -> None:
    built: list[str] = []

    def counted(entry):
        def build(**kwargs):
            built.append(entry.name)
            return entry.build(**kwargs)
        return dataclasses.replace(entry, build=build)

    graphs = {name: counted(entry) for name, entry in GRAPHS.items()}
    with TestClient(create_app("memory", model=OfflineChatModel(), graphs=graphs)) as client:
        assert sorted(built) == sorted(GRAPHS)
        thread = client.post("/threads", json={"graph": "customer-service"}).json()["thread_id"]
        reply = client.post(f"/threads/{thread}/messages", json={"text": "Hello there", "stream": False})
        assert reply.status_code == 200
        assert sorted(built) == sorted(GRAPHS), "serving a turn built nothing again"


def test_a_graph_that_cannot_be_built_stops_the_start() -> None:
    def broken(**kwargs):
        raise GraphBuildError("two agents are named 'x'")

    graphs = {**GRAPHS, "broken": dataclasses.replace(GRAPHS["customer-service"], name="broken", build=broken)}
    with pytest.raises(GraphBuildError, match="two agents"), TestClient(create_app("memory", graphs=graphs)):
        pass
