"""The web chat in headless Chromium shows a reply while it is being written, and marks one that broke off.

The service runs the real OpenAI client against the local stub, which holds its answer after a few
tokens until the test has seen them on the page (ordering, not timing). Chromium is Debian's, launched
as tests/test_browser.py does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, expect

from handoff.agents.models import make_chat_model
from handoff.service.app import create_app
from tests.support.live_service import serving_app, use_stub
from tests.support.openai_stub import OpenAIStub, SlowStream
from tests.test_browser import browser, open_chat, screenshot, send

__all__ = ["browser"]  # the fixture, shared with the web chat's other tests

ANSWER = "Hello Dana, I am looking into your connection right now and will report back in a moment."
SHOWN_FIRST = "Hello Dana, I"


@pytest.fixture
def stub_server(monkeypatch: pytest.MonkeyPatch, openai_stub: OpenAIStub) -> Iterator[tuple[str, OpenAIStub]]:
    """The service with the web chat, on the real OpenAI client against the stub."""
    use_stub(monkeypatch, openai_stub)
    with serving_app(create_app("memory", model=make_chat_model())) as url:
        yield url, openai_stub


def test_the_web_chat_shows_partial_text_before_the_turn_ends(
    browser: BrowserContext, stub_server: tuple[str, OpenAIStub]
) -> None:
    url, stub = stub_server
    slow = SlowStream(ANSWER, hold_after=3)
    stub.add(slow)
    errors: list[str] = []
    page = open_chat(browser, url, errors)
    send(page, "hello")

    bubble = page.locator('.msg[data-agent="general_support"]')
    expect(bubble).to_have_attribute("data-state", "streaming")
    expect(bubble.locator(".text")).to_have_text(SHOWN_FIRST)  # trailing space trimmed by the check
    assert not slow.finished.is_set(), "the stub had sent its whole answer already"
    expect(page.get_by_test_id("send")).to_be_disabled()  # the turn is still running
    expect(bubble.locator(".who")).to_have_text("General Support")
    screenshot(page, "web-chat-streaming.png")

    slow.resume.set()
    expect(bubble).to_have_attribute("data-state", "complete")
    expect(bubble.locator(".text")).to_have_text(ANSWER)
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.locator(".msg.agent")).to_have_count(1)  # the whole message replaced the streamed text
    assert errors == []


def test_the_web_chat_marks_a_reply_that_broke_off_and_shows_the_retried_one(
    browser: BrowserContext, stub_server: tuple[str, OpenAIStub]
) -> None:
    url, stub = stub_server
    stub.add(SlowStream(ANSWER, every=0, break_after=3), SlowStream(ANSWER, every=0))
    errors: list[str] = []
    page = open_chat(browser, url, errors)
    send(page, "hello")

    broken = page.locator('.msg[data-state="interrupted"]')
    expect(broken.locator(".text")).to_have_text(SHOWN_FIRST)
    expect(broken.get_by_test_id("interrupted")).to_contain_text("broke off and was not kept")
    whole = page.locator('.msg[data-state="complete"]')
    expect(whole.locator(".text")).to_have_text(ANSWER)
    expect(page.get_by_test_id("send")).to_be_enabled()
    screenshot(page, "web-chat-interrupted.png")

    page.reload()  # the stored conversation holds the whole answer only
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator(".msg.agent .text")).to_have_text([ANSWER])
    assert errors == []
