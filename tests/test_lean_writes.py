"""A node's update carries only what changes the state: LangGraph stores every returned key as a row."""

from __future__ import annotations

from typing import Any

from handoff.graphs.nodes import changes_only

STATE: dict[str, Any] = {
    "active_agent": "general_support", "hops": 0, "notice": None, "pending_handoff": None, "turn": 4,
    "case_file": {"account_id": "ACC-1001", "topics": ["wifi"]}, "usage": {"general_support": {"calls": 1}},
}


def test_values_the_state_already_holds_are_left_out() -> None:
    update = {"active_agent": "general_support", "hops": 0, "notice": None, "pending_handoff": None, "turn": 5}
    assert changes_only(STATE, update) == {"turn": 5}


def test_a_changed_value_or_a_key_the_state_lacks_is_kept() -> None:
    update = {"active_agent": "billing_expert", "briefing": None, "hops": 1}
    assert changes_only(STATE, dict(update)) == update


def test_case_file_fields_already_held_are_left_out_but_new_facts_and_list_additions_kept() -> None:
    assert "case_file" not in changes_only(STATE, {"case_file": {"account_id": "ACC-1001", "plan": None}})
    assert changes_only(STATE, {"case_file": {"account_id": "ACC-2002"}}) == {"case_file": {"account_id": "ACC-2002"}}
    grown = {"case_file": {"topics": ["wifi", "billing"]}}
    assert changes_only(STATE, dict(grown)) == grown


def test_keys_whose_reducer_adds_are_always_written() -> None:
    update = {"usage": {"general_support": {"calls": 1}}, "messages": [], "handoffs": []}
    assert changes_only(STATE, dict(update)) == update


def test_keys_asked_for_are_kept_even_when_unchanged() -> None:
    assert changes_only(STATE, {"active_agent": "general_support"}, keep={"active_agent"}) == {
        "active_agent": "general_support"}
