"""The web chat in headless Chromium: a handoff on the timeline, a person answering an escalation.

Chromium is Debian's (/usr/bin/chromium, installed by scripts/install-browser.sh);
Playwright drives it and never downloads a browser of its own. Screenshots are
saved in test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.session import MAX_MESSAGE_CHARS
from handoff.service.app import create_app
from tests.support.live_service import serving_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
"""As the machine notes say: without the background-networking flags Chromium keeps
trying to reach hosts this closed network refuses."""
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 15_000


@pytest.fixture
def live_server() -> Iterator[str]:
    """The service on a free local port, in memory, on the offline model."""
    with serving_app(create_app("memory", model=OfflineChatModel())) as url:
        yield url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a new empty profile."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-browser.sh`")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


def open_chat(browser: BrowserContext, url: str, script_errors: list[str]) -> Page:
    """The chat page, ready; uncaught script errors are collected in ``script_errors``."""
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.on("console", lambda msg: script_errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def send(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("message-input").press("Enter")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_handoff_appears_on_the_timeline_with_its_reason(browser: BrowserContext, live_server: str) -> None:
    errors: list[str] = []
    page = open_chat(browser, live_server, errors)
    send(page, "Hi, this is Dana, account ACC-1001. My internet keeps dropping every evening.")

    handoff = page.locator('#timeline li[data-source="general_support"][data-target="technical_specialist"]')
    expect(handoff).to_have_attribute("data-outcome", "completed")
    expect(handoff).to_contain_text("General Support \u2192 Technical Specialist")
    expect(handoff).to_contain_text("The request is about internet, dropping.")
    expect(handoff).to_contain_text("On arrival: service in region west")
    expect(page.locator('.msg[data-agent="technical_specialist"]')).to_contain_text("[offline model]")
    expect(page.get_by_test_id("active-agent")).to_have_text("Technical Specialist")
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert screenshot(page, "web-chat-handoff.png").stat().st_size > 10_000

    page.reload()  # the thread id is in the URL: the conversation comes back from the service
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator('#timeline li[data-target="technical_specialist"]')).to_have_count(1)
    expect(page.locator(".msg.user")).to_contain_text("My internet keeps dropping")
    assert errors == []


def test_a_person_answers_the_escalation_from_the_page(browser: BrowserContext, live_server: str) -> None:
    errors: list[str] = []
    page = open_chat(browser, live_server, errors)
    send(page, "This is useless, I want to speak to a manager.")

    prompt = page.get_by_test_id("escalation")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("The user asked for a person.")
    expect(prompt).to_contain_text("I want to speak to a manager")
    expect(page.locator('#timeline li[data-target="human"]')).to_have_attribute("data-outcome", "accepted")
    screenshot(page, "web-chat-escalation.png")

    page.get_by_test_id("escalation-reply").fill("Jo here, a person: I have credited your account.")
    page.get_by_test_id("escalation-hand-back").select_option("billing_expert")
    page.get_by_test_id("escalation-send").click()

    expect(page.locator('.msg[data-agent="human"]')).to_contain_text("I have credited your account.")
    expect(prompt).to_be_hidden()
    hand_back = page.locator('#timeline li[data-source="human"][data-target="billing_expert"]')
    expect(hand_back).to_contain_text("Human agent \u2192 Billing Expert")
    expect(hand_back).to_contain_text("A person handed the conversation back.")
    expect(page.get_by_test_id("timeline")).not_to_contain_text("null")
    expect(page.get_by_test_id("active-agent")).to_have_text("Billing Expert")
    screenshot(page, "web-chat-escalation-answered.png")
    assert errors == []


def test_a_message_the_service_refuses_keeps_its_text(browser: BrowserContext, live_server: str) -> None:
    """A refused message (here: over the length limit) is not shown as sent, and its text stays in the box."""
    errors: list[str] = []
    page = open_chat(browser, live_server, errors)
    too_long = "Please read all of this. " * (MAX_MESSAGE_CHARS // 20)
    box = page.get_by_test_id("message-input")
    send(page, too_long)

    expect(page.get_by_test_id("error")).to_be_visible()
    expect(page.get_by_test_id("error")).to_contain_text(str(MAX_MESSAGE_CHARS))
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(box).to_have_value(too_long)
    expect(page.locator(".msg.user")).to_have_count(0)

    send(page, "Hi, this is Dana, account ACC-1001.")  # after a refusal the next message goes through
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator(".msg.user")).to_contain_text("account ACC-1001")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("error")).to_be_hidden()
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []
