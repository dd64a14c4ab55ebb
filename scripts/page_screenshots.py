"""Screenshots of the chat page for the README: a conversation at desktop and phone width.

The app runs under uvicorn against the tests' fake OpenAI server, so the answers are canned
and no key is needed; Chromium is Debian's (tests/browser.py).

Usage: make screenshots (writes docs/page-desktop.png and docs/page-phone.png)
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright
from tests.browser import launch
from tests.fake_openai import FakeOpenAI, Reply, stream_of

from chat_api.main import create_app

DOCS = Path(__file__).resolve().parents[1] / "docs"
QUESTION = "How do I reverse a list in Python?"
ANSWER = (
    "Two common ways:\n\n"
    "1. **In place**, changing the list:\n\n"
    "```python\nnumbers = [1, 2, 3]\nnumbers.reverse()\n```\n\n"
    "2. **A reversed copy**, leaving the original alone:\n\n"
    "```python\nbackwards = numbers[::-1]\n```\n\n"
    "Use `reversed(numbers)` when you only need to loop over it."
)
FOLLOW_UP = "Which one is faster?"
SECOND_ANSWER = (
    "`numbers.reverse()` is a little faster and needs no extra memory; "
    "`numbers[::-1]` builds a new list. See the "
    "[docs](https://docs.python.org/3/tutorial/datastructures.html)."
)
VIEWPORTS = {
    "desktop": ViewportSize(width=1100, height=760),
    "phone": ViewportSize(width=390, height=844),
}


def serve() -> tuple[str, uvicorn.Server]:
    """The app on a free loopback port, from the environment set by `main`."""
    server = uvicorn.Server(
        uvicorn.Config(create_app, factory=True, host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/", server


def converse(page: Page, url: str, fake: FakeOpenAI) -> None:
    """Two turns of a conversation, each answer complete on screen."""
    page.goto(url)
    box = page.get_by_role("textbox", name="Message", exact=True)
    turns = ((QUESTION, ANSWER), (FOLLOW_UP, SECOND_ANSWER))
    for number, (question, answer) in enumerate(turns, start=1):
        fake.enqueue(Reply(stream=stream_of(answer)))
        box.fill(question)
        box.press("Enter")
        expect(page.get_by_role("article", name="Assistant")).to_have_count(number)
        expect(page.locator("[aria-busy]")).to_have_count(0)
    box.fill("Show me an example with strings")


def main() -> None:
    fake = FakeOpenAI().start()
    with tempfile.TemporaryDirectory() as data:
        os.environ.update(
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="sk-fake-for-screenshots",
            SESSIONS_DB_PATH=str(Path(data) / "sessions.sqlite3"),
            POWERTOOLS_METRICS_DISABLED="true",
        )
        os.environ.pop("CLIENT_API_KEYS", None)
        url, server = serve()
        DOCS.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport)
                converse(page, url, fake)
                page.screenshot(path=DOCS / f"page-{name}.png")
                page.close()
            browser.close()
        server.should_exit = True
    fake.stop()


if __name__ == "__main__":
    main()
