"""Content creation: research -> writing -> editing, with a bounded revision loop."""

from __future__ import annotations

from handoff.agents.content_creation.specialists import EDITOR, MAX_REVISION_ROUNDS, RESEARCHER, WRITER
from handoff.agents.scripted import ScriptedChatModel
from handoff.graphs.content_creation import build_content_creation_graph
from handoff.graphs.session import HandoffSession
from tests.support.domains import accepted, agents_of, play_demo, run_json, session_of, use

GATE = "handoff_gate"


def _script() -> ScriptedChatModel:
    return ScriptedChatModel(scripts={
        RESEARCHER: [use("find_sources", {"query": "heat pumps"}, call_id="r1"), "Five sources found."],
    })


def _to_editor(model: ScriptedChatModel, session: HandoffSession, version: int):
    model.add(WRITER, [use("transfer_to_editor", {"reason": "draft ready for review",
                                                  "draft_version": version}, call_id=f"w2e{version}")])
    model.add(EDITOR, [use("check_draft", call_id=f"check{version}"), f"Draft v{version} reviewed."])
    return session.send("Please send it to the editor for review.")


def _back_to_writer(model: ScriptedChatModel, session: HandoffSession, round_: int, *, accepted_: bool = True,
                    notes: str | None = "cut the last fact"):
    payload = {"reason": "the draft needs revision", "topic": "heat pumps"}
    if notes:
        payload["revision_notes"] = notes
    model.add(EDITOR, [use("transfer_to_writer", payload, call_id=f"e2w{round_}")])
    if accepted_:
        model.add(WRITER, [use("write_draft", {"topic": "heat pumps"}, call_id=f"rev{round_}"), "Revised."])
    else:
        model.add(EDITOR, ["The revision limit is reached; I will approve or explain what is left."])
    return session.send("Please send it back to the writer.")


def _drafted(model: ScriptedChatModel) -> HandoffSession:
    session = session_of(build_content_creation_graph, model)
    first = session.send("Research heat pumps for homeowners, please.")
    assert first.path == [RESEARCHER]
    model.add(WRITER, [use("write_draft", {"topic": "heat pumps"}, call_id="w1"), "Draft v1 is ready."])
    second = session.send("Now write the first draft.")
    assert second.path == ["intake", GATE, WRITER]
    assert second.handoffs[-1].request.trigger_name == "ready_to_write"
    return session


def test_editor_hands_back_at_most_the_bounded_number_of_rounds() -> None:
    model = _script()
    session = _drafted(model)
    for round_ in range(1, MAX_REVISION_ROUNDS + 1):
        review = _to_editor(model, session, version=round_)
        assert review.path == [WRITER, GATE, EDITOR]
        back = _back_to_writer(model, session, round_)
        assert back.path == [EDITOR, GATE, WRITER]
        assert back.case_file["revision_rounds"] == round_
    _to_editor(model, session, version=MAX_REVISION_ROUNDS + 1)
    writer_calls = len(model.calls_by(WRITER))

    refused = _back_to_writer(model, session, MAX_REVISION_ROUNDS + 1, accepted_=False)

    assert refused.path == [EDITOR, GATE, EDITOR]
    assert refused.active_agent == EDITOR
    last = refused.handoffs[-1]
    assert (last.source, last.target, last.outcome) == (EDITOR, WRITER, "rejected")
    assert last.rejection is not None and last.rejection.code == "precondition_failed"
    assert f"{MAX_REVISION_ROUNDS} revision rounds" in last.rejection.message
    assert len(model.calls_by(WRITER)) == writer_calls
    assert refused.case_file["revision_rounds"] == MAX_REVISION_ROUNDS


def test_hand_back_keeps_what_the_editor_learned() -> None:
    model = _script()
    session = _drafted(model)
    review = _to_editor(model, session, version=1)
    notes = review.case_file["revision_notes"]
    assert "cut at least" in notes

    back = _back_to_writer(model, session, 1, notes=None)

    writer_prompt = str(model.calls_by(WRITER)[-2]["messages"][0].content)
    assert notes in writer_prompt
    assert back.case_file["source_ids"] == review.case_file["source_ids"]
    assert back.case_file["revision_notes"] == notes
    assert back.case_file["draft_version"] == 2
    init = back.handoffs[-1].init_result
    assert init is not None and init.action == "load_revision_notes" and notes in init.summary


def test_writer_refuses_to_start_without_research() -> None:
    model = ScriptedChatModel(scripts={RESEARCHER: ["Let me research that first."]})
    session = session_of(build_content_creation_graph, model)

    result = session.send("Write me a draft about heat pumps.")

    assert result.path == ["intake", GATE, RESEARCHER]
    [record] = result.handoffs
    assert record.rejection is not None and record.rejection.code == "precondition_failed"
    assert "no research on file" in record.rejection.message
    assert model.calls_by(WRITER) == []


def test_offline_demo_runs_the_chain_and_one_revision_round() -> None:
    turns = play_demo("content-creation")

    assert accepted(turns[-1].handoffs) == [
        (RESEARCHER, WRITER), (WRITER, EDITOR), (EDITOR, WRITER), (WRITER, EDITOR)]
    assert [agents_of(t.path)[-1] for t in turns] == [RESEARCHER, WRITER, EDITOR, WRITER, EDITOR]
    final = turns[-1].case_file
    assert final["stage"] == "approved" and final["publication_id"].startswith("PUB-")
    assert final["revision_rounds"] == 1 and final["draft_version"] == 2
    assert all(t.reply.startswith("[offline model]") for t in turns)


def test_run_json_works_for_content_creation(tmp_path) -> None:
    data = run_json("content-creation", "Please research heat pumps.", db=str(tmp_path / "h.sqlite"))

    assert data["active_agent"] == RESEARCHER
    assert data["case_file"]["topic"] == "heat pumps"
    assert data["reply"].startswith("[offline model]")
