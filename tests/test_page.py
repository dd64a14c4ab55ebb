"""The chat page at `GET /`, used the way a person uses it: in Chromium, against uvicorn.

The app runs under uvicorn with the fake OpenAI server behind it; Playwright drives Debian's
Chromium (tests/browser.py). A few checks need no browser: headers, the Lambda handler, the
vendored files, the start-up warning and `make dev`'s port.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_api.main import create_app
from chat_api.routes.page import STATIC_DIR
from tests.browser import launch
from tests.conftest import CLIENT_API_KEY, Configure, Invoke, Serve, load_event
from tests.fake_openai import FakeOpenAI, Reply, error_body, stream_of

ROOT = Path(__file__).resolve().parents[1]
STAGE = "/Prod"
PAYLOAD_FLAG = "window.pwned"
GATEWAY_KEY = "gateway-key-of-the-usage-plan"
KEYED_PREFIXES = (f"{STAGE}/chat", f"{STAGE}/sessions/", f"{STAGE}/v1/")
HOSTILE_ANSWER = (
    'Look: <img src=x onerror="window.pwned=1"> <script>window.pwned=2</script> '
    '[click me](javascript:window.pwned=3) <a href="javascript:window.pwned=4">raw link</a> '
    '<svg onload="window.pwned=5"></svg>'
)

expect.set_options(timeout=5_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, started once for this module's tests.

    Playwright's sync API keeps an asyncio loop running on the main thread while it is
    started, so `asyncio.run` cannot be called here meanwhile; it stops with the module.
    """
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab in a fresh profile; the test fails on any uncaught script error."""
    context = browser.new_context()
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == []


@pytest.fixture
def open_local(configure: Configure, fake_openai: FakeOpenAI, serve: Serve) -> str:
    """As `make dev` runs: no client keys, keyless local mode; the page's URL."""
    configure(CLIENT_API_KEYS=None, ALLOW_KEYLESS_LOCALHOST="true")
    return f"{serve()}/"


def send(page: Page, text: str) -> None:
    """Type a message and press Enter, as a person does."""
    box = page.get_by_role("textbox", name="Message", exact=True)
    box.fill(text)
    box.press("Enter")


def answers(page: Page) -> Locator:
    return page.get_by_role("article", name="Assistant", exact=True)


def wait_for_answer(page: Page, text: str, index: int = -1) -> None:
    """The answer at `index` is complete (no longer busy) and says `text`."""
    answer = page.get_by_role("article", name="Assistant", exact=True).nth(index)
    expect(answer).to_have_text(text)
    expect(answer).not_to_have_attribute("aria-busy", "true")


def behind_stage(app: ASGIApp) -> ASGIApp:
    """The app as the deployed REST API presents it: only below /Prod, with it as root path,
    and API Gateway's own 403 for a keyed route without the API key."""

    async def staged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope["path"]
        headers = dict(scope["headers"])
        refused = None
        if not path.startswith(f"{STAGE}/"):
            refused = {"message": "Forbidden"}
        elif path.startswith(KEYED_PREFIXES) and headers.get(b"x-api-key") != GATEWAY_KEY.encode():
            refused = {"error": "Missing or invalid API key: send it in the x-api-key header."}
        if refused:
            await JSONResponse(refused, status_code=403)(scope, receive, send)
            return
        await app({**scope, "root_path": STAGE}, receive, send)

    return staged


# Served as a page should be


def test_page_has_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_page_needs_no_key_and_is_not_in_the_api_schema(fake_openai: FakeOpenAI) -> None:
    # fake_openai configures client keys: the page and its files still need none.
    anonymous = TestClient(create_app())

    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/static/app.js").status_code == 200
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/static")]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/vendor/marked.esm.js", "text/javascript"),
        ("/static/vendor/purify.es.mjs", "text/javascript"),
    ],
)
def test_static_files_are_served_with_their_media_type(
    client: TestClient, path: str, media_type: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.content == (STATIC_DIR / path.removeprefix("/static/")).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",
        "/static/vendor/README.md",
        "/static/vendor/LICENSE.marked",
        "/static/../routes/page.py",
        "/static/%2e%2e/routes/page.py",
        "/static/nope.js",
    ],
)
def test_only_the_pages_scripts_and_styles_are_static_files(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert "error" in response.json()


def test_page_uses_only_relative_urls() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    script = (STATIC_DIR / "app.js").read_text()

    urls = re.findall(r'(?:href|src)="([^"]*)"', html)
    urls += re.findall(r'fetch\(\s*[`"\']([^`"\']*)', script)
    urls += re.findall(r'from "([^"]*)"', script)
    assert urls
    assert [url for url in urls if url.startswith("/") or ":" in url] == []


# The Lambda handler on the stage URL


def test_page_on_the_stage_url_is_served_with_its_policy(invoke: Invoke) -> None:
    event = load_event("health.json", path="/", resource="/")
    event["requestContext"] = {**event["requestContext"], "path": "/Prod/", "resourcePath": "/"}

    response = invoke(event)

    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/html")
    assert "script-src 'self'" in response["headers"]["content-security-policy"]
    assert '<script type="module" src="static/app.js">' in response["body"]


def test_stage_root_without_its_slash_redirects_into_the_stage(invoke: Invoke) -> None:
    # At /Prod the page's relative URLs would point outside the stage.
    event = load_event("health.json", path="/", resource="/")
    event["requestContext"] = {**event["requestContext"], "path": "/Prod", "resourcePath": "/"}

    response = invoke(event)

    assert response["statusCode"] == 308
    assert response["headers"]["location"] == "Prod/"


def test_script_through_the_handler_is_text_not_base64(invoke: Invoke) -> None:
    # A REST API without binary media types would hand base64 to the browser.
    path = "/static/vendor/purify.es.mjs"
    event = load_event("health.json", path=path, resource="/static/{path+}")
    event["requestContext"] = {**event["requestContext"], "path": f"/Prod{path}"}

    response = invoke(event)

    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is False
    assert response["body"].encode() == (STATIC_DIR / "vendor" / "purify.es.mjs").read_bytes()


# The page in a browser


def test_first_piece_of_the_answer_shows_before_the_last_chunk_is_sent(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    text = "Streaming answers arrive one piece at a time right here"
    events = stream_of(text)
    fake_openai.enqueue(Reply(stream=events, chunk_delay=0.2))
    page.goto(open_local)

    send(page, "Hello")
    expect(answers(page).last).to_contain_text("Streaming")
    sent_when_seen = len(fake_openai.requests[-1].events_sent_at)

    # Events: the role, one per word, the finish; the last word is events[-2].
    assert sent_when_seen < len(events) - 1
    wait_for_answer(page, text)


def test_reload_shows_the_conversation_from_the_server(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    page.goto(open_local)
    send(page, "First question")
    wait_for_answer(page, "Echo: First question")

    with page.expect_response(lambda response: "/sessions/" in response.url) as loaded:
        page.reload()

    assert loaded.value.status == 200
    log = page.get_by_role("log")
    expect(log.get_by_role("article", name="You")).to_have_text(["First question"])
    wait_for_answer(page, "Echo: First question")
    send(page, "Second question")
    wait_for_answer(page, "Echo: Second question")
    sent = [message["content"] for message in fake_openai.requests[-1].json["messages"]]
    assert sent[-3:] == ["First question", "Echo: First question", "Second question"]


def test_stop_ends_the_answer_midway_and_nothing_of_it_is_kept(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    page.goto(open_local)
    send(page, "First")
    wait_for_answer(page, "Echo: First")
    events = stream_of("one two three four five six seven eight nine ten")
    fake_openai.enqueue(Reply(stream=events, chunk_delay=0.1))
    send(page, "Count")
    expect(answers(page).last).to_contain_text("one")

    page.get_by_role("button", name="Stop", exact=True).click()

    answer = answers(page).last
    expect(answer).to_contain_text("Stopped")
    expect(answer).not_to_contain_text("ten")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_focused()
    # The server cancels the OpenAI call with the request: once the whole stream would have
    # been sent, the fake was read no further and the turn was not stored.
    stopped = fake_openai.requests[-1]
    time.sleep(max(0.0, stopped.events_sent_at[0] + 0.1 * len(events) + 0.2 - time.monotonic()))
    assert len(stopped.events_sent_at) < len(events)
    session = page.evaluate("localStorage.getItem('chat-api.session')")
    stored = httpx.get(f"{open_local}sessions/{session}").json()["messages"]
    assert [message["content"] for message in stored] == ["First", "Echo: First"]
    send(page, "Again")
    wait_for_answer(page, "Echo: Again")


def test_401_brings_the_key_field_back_and_the_key_stays_in_the_tab(
    page: Page, fake_openai: FakeOpenAI, serve: Serve
) -> None:
    url = f"{serve()}/"  # fake_openai configures CLIENT_API_KEY as the one accepted key
    page.goto(url)
    key = page.get_by_label("API key", exact=True)
    expect(key).to_be_hidden()

    send(page, "Hello")
    expect(page.get_by_role("alert")).to_contain_text("API key")
    expect(key).to_be_focused()
    key.fill("not-the-key")
    key.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("API key")
    expect(key).to_be_visible()
    key.fill(CLIENT_API_KEY)
    key.press("Enter")

    wait_for_answer(page, "Echo: Hello")
    expect(key).to_be_hidden()
    page.reload()
    wait_for_answer(page, "Echo: Hello")
    expect(key).to_be_hidden()
    # Another tab has its own sessionStorage: it must ask again to read the conversation.
    other = page.context.new_page()
    other.goto(url)
    expect(other.get_by_label("API key", exact=True)).to_be_visible()
    expect(other.get_by_role("article")).to_have_count(0)


def test_markup_in_an_answer_runs_nothing(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(stream=stream_of(HOSTILE_ANSWER)))
    page.goto(open_local)
    send(page, "Say something nasty")
    answer = answers(page).last
    expect(answer).to_contain_text("raw link")
    expect(answer).not_to_have_attribute("aria-busy", "true")

    for _ in range(2):  # as streamed, then as restored from the server on reload
        page.get_by_text("click me").click()
        page.get_by_text("raw link").click()
        assert page.evaluate(PAYLOAD_FLAG) is None
        dangerous = "[onerror], [onload], script, a[href^='javascript:'], svg[onload]"
        expect(page.get_by_role("log").locator(dangerous)).to_have_count(0)
        page.reload()
        expect(answers(page).last).to_contain_text("raw link")
    assert page.url == open_local


def test_markdown_is_rendered_code_lists_and_links(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    markdown = (
        "Here:\n\n```\nprint(1)\n```\n\n- one\n- two\n\nSee [the docs](https://example.com/x)."
    )
    fake_openai.enqueue(Reply(stream=stream_of(markdown)))
    page.goto(open_local)
    send(page, "Show me")

    answer = answers(page).last
    expect(answer.locator("pre code")).to_have_text("print(1)")
    expect(answer.get_by_role("listitem")).to_have_text(["one", "two"])
    link = answer.get_by_role("link", name="the docs")
    expect(link).to_have_attribute("href", "https://example.com/x")
    expect(link).to_have_attribute("rel", "noopener noreferrer")


def test_korean_typed_through_an_input_method_sends_once(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    page.goto(open_local)
    box = page.get_by_role("textbox", name="Message", exact=True)
    box.focus()
    ime = page.context.new_cdp_session(page)
    # 안녕: each syllable is composed from its letters, as a Korean input method does.
    for letters, syllable in (("ㅇ", "안"), ("ㄴ", "녕")):
        ime.send(
            "Input.imeSetComposition", {"text": letters, "selectionStart": 1, "selectionEnd": 1}
        )
        ime.send(
            "Input.imeSetComposition", {"text": syllable, "selectionStart": 1, "selectionEnd": 1}
        )
        if syllable == "녕":
            # Enter while 녕 is still being composed commits the syllable; it must not send.
            page.keyboard.press("Enter")
            expect(page.get_by_role("article", name="You")).to_have_count(0)
            expect(box).to_have_value(re.compile("^안녕"))
        ime.send("Input.insertText", {"text": syllable})

    page.keyboard.press("Enter")

    wait_for_answer(page, "Echo: 안녕")
    expect(page.get_by_role("article", name="You")).to_have_text(["안녕"])
    assert [request.json["messages"][-1]["content"] for request in fake_openai.requests] == ["안녕"]


def test_shift_enter_is_a_new_line_and_the_keyboard_alone_reaches_everything(
    page: Page, open_local: str
) -> None:
    page.goto(open_local)
    box = page.get_by_role("textbox", name="Message", exact=True)
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    # Delete is disabled until there is a conversation, so Tab passes it by.
    assert focused == ["new-chat", "log", "message"]

    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    expect(box).to_have_value("line one\nline two")
    page.keyboard.press("Enter")
    wait_for_answer(page, "Echo: line one line two")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Delete", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("article")).to_have_count(0)


def test_new_chat_starts_another_and_delete_removes_it(
    page: Page, open_local: str, fake_openai: FakeOpenAI
) -> None:
    page.goto(open_local)
    send(page, "First")
    wait_for_answer(page, "Echo: First")
    first = page.evaluate("localStorage.getItem('chat-api.session')")

    page.get_by_role("button", name="New chat", exact=True).click()
    expect(page.get_by_role("article")).to_have_count(0)
    send(page, "Second")
    wait_for_answer(page, "Echo: Second")
    second = page.evaluate("localStorage.getItem('chat-api.session')")
    assert [message["content"] for message in fake_openai.requests[-1].json["messages"]][1:] == [
        "Second"
    ]

    with page.expect_response(lambda response: response.request.method == "DELETE") as deleted:
        page.get_by_role("button", name="Delete", exact=True).click()

    assert deleted.value.status == 204
    expect(page.get_by_role("article")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_text("The conversation was deleted.")
    assert first != second
    assert httpx.get(f"{open_local}sessions/{second}").status_code == 404
    assert httpx.get(f"{open_local}sessions/{first}").status_code == 200


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (
            Reply(
                status=429,
                body=error_body("Rate limit reached", "requests", "rate_limit_exceeded"),
                headers={"retry-after": "7"},
            ),
            "Try again in 7 seconds.",
        ),
        (Reply(status=500, body=error_body("boom", "server_error")), "OpenAI failed to answer."),
        (Reply(delay=2.0), "OpenAI took too long to answer."),
        (Reply(stream=stream_of("a partial answer"), break_after=2), "The answer broke off"),
    ],
    ids=["429", "502", "504", "broken-stream"],
)
def test_errors_are_told_in_words(
    page: Page,
    open_local: str,
    fake_openai: FakeOpenAI,
    configure: Configure,
    reply: Reply,
    said: str,
) -> None:
    if reply.delay:
        configure(OPENAI_TIMEOUT_SECONDS="0.5")
    fake_openai.enqueue(reply)
    page.goto(open_local)

    send(page, "Hello")

    expect(page.get_by_role("alert")).to_contain_text(said)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()


def test_missing_openai_key_is_shown_on_the_page(
    page: Page, open_local: str, configure: Configure
) -> None:
    configure(OPENAI_API_KEY=None)
    page.goto(open_local)

    send(page, "Hello")

    expect(page.get_by_role("alert")).to_contain_text("OPENAI_API_KEY")
    # Nothing was said: the message is back in the box, to send once the key is set.
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_have_value("Hello")
    expect(page.get_by_role("article")).to_have_count(0)


def test_page_works_below_the_stage_prefix_with_api_gateways_key(
    page: Page, configure: Configure, fake_openai: FakeOpenAI, serve: Serve
) -> None:
    # API Gateway checks the key, as on AWS; behind it the app serves what reaches it.
    configure(CLIENT_API_KEYS=None, ALLOW_KEYLESS_LOCALHOST="true")
    origin = serve(behind_stage)
    assert httpx.get(f"{origin}/").status_code == 403  # outside the stage, as on API Gateway
    requested: list[tuple[str, int]] = []
    page.on("response", lambda response: requested.append((response.url, response.status)))

    page.goto(f"{origin}{STAGE}/")
    send(page, "Hi")
    key = page.get_by_label("API key", exact=True)
    expect(key).to_be_focused()
    key.fill(GATEWAY_KEY)
    key.press("Enter")
    wait_for_answer(page, "Echo: Hi")
    page.reload()
    wait_for_answer(page, "Echo: Hi")

    paths = {urlsplit(url).path for url, _ in requested}
    assert {"/Prod/", "/Prod/static/app.js", "/Prod/chat"} <= paths
    outside = [url for url, _ in requested if not urlsplit(url).path.startswith("/Prod/")]
    assert outside == []
    # The one refusal is the first message, sent before the key was asked for.
    assert [(urlsplit(url).path, status) for url, status in requested if status >= 400] == [
        ("/Prod/chat", 403)
    ]


def test_page_fits_a_phone_screen(page: Page, open_local: str) -> None:
    page.set_viewport_size({"width": 360, "height": 640})
    page.goto(open_local)
    send(page, "A long message " * 20)
    wait_for_answer(page, "Echo: " + " ".join(["A long message"] * 20))

    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for name in ("Send", "New chat", "Delete"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 360
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= 640
        assert box["height"] >= 40  # a finger's size


# First run and local serving


def test_start_up_warns_once_when_no_openai_key_is_configured(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(OPENAI_API_KEY=None, OPENAI_API_KEY_SECRET_ID=None)

    with caplog.at_level(logging.WARNING, logger="chat_api.main"):
        create_app()

    warnings = [
        record.getMessage() for record in caplog.records if "OpenAI API key" in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "OPENAI_API_KEY" in warnings[0]
    assert "OPENAI_BASE_URL" in warnings[0]


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "OPENAI_API_KEY_SECRET_ID"])
def test_start_up_is_quiet_about_the_key_when_one_is_configured(
    configure: Configure, caplog: pytest.LogCaptureFixture, variable: str
) -> None:
    configure(**{variable: "sk-or-secret-name"})

    with caplog.at_level(logging.WARNING, logger="chat_api.main"):
        create_app()

    assert [record for record in caplog.records if "OpenAI API key" in record.getMessage()] == []


@pytest.mark.parametrize(("arguments", "port"), [([], "8000"), (["PORT=5000"], "5000")])
def test_make_dev_serves_on_port(arguments: list[str], port: str) -> None:
    dry_run = subprocess.run(
        ["make", "--dry-run", "--always-make", "dev", *arguments],  # noqa: S607 (make from PATH)
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.replace("\\\n", " ")

    (serve_line,) = [line for line in dry_run.splitlines() if "uvicorn" in line]
    assert f"--port {port} " in f"{serve_line} "


# The vendored libraries


@pytest.mark.parametrize(
    ("file", "header"),
    [("marked.esm.js", "marked v{version}"), ("purify.es.mjs", "DOMPurify {version}")],
)
def test_vendored_files_are_the_versions_and_hashes_their_readme_names(
    file: str, header: str
) -> None:
    readme = (STATIC_DIR / "vendor" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{file}`"))
    version = re.search(r"@([0-9.]+)`", row)
    digest = re.search(r"`([0-9a-f]{64})`", row)
    assert version is not None
    assert digest is not None

    content = (STATIC_DIR / "vendor" / file).read_bytes()

    assert header.format(version=version[1]) in content[:400].decode()
    assert hashlib.sha256(content).hexdigest() == digest[1]
