"""The web console at /ui in a real headless Chromium (Debian's package, driven by Playwright)
against a real gateway process and the fake ComfyUI: what a person sees and clicks."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

from comfy_gateway.client import Client

from .conftest import Fake, Gateway, empty_save
from .support.procs import ROOT
from .support.wait import until
from .test_cli import slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
KEY = "console-key"
expect.set_options(timeout=60_000)  # waits for what the page shows; never a measure of speed


@pytest.fixture(scope="module")
async def browser():
    assert Path(CHROMIUM).is_file(), "Debian's chromium is missing: scripts/setup.sh --test installs it"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    await context.close()
    assert not errors, errors  # no script error on the page, whatever the test did


@pytest.fixture(scope="module")
def shared_fake(module_fake_factory) -> Fake:
    return module_fake_factory()


@pytest.fixture
def fake(shared_fake: Fake) -> Fake:
    """One fake for the module, reset to a clean state for each test."""
    return shared_fake.reset()


@pytest.fixture(scope="module")
def shared_gw(shared_fake: Fake, module_gateway_factory) -> Gateway:
    return module_gateway_factory(shared_fake.url, GENERATION_WORKERS="1", API_KEYS=KEY)


@pytest.fixture
def gw(fake: Fake, shared_gw: Gateway) -> Gateway:
    """The module's gateway, in front of the freshly reset fake."""
    return shared_gw


async def open_console(page: Page, gw: Gateway) -> None:
    await page.goto(gw.url + "/ui")
    await expect(page.locator("#banner")).to_contain_text("needs an API key")
    await page.fill("#api-key", KEY)
    await page.click("#key-form button")
    await expect(page.locator("#banner")).to_be_hidden()


async def test_run_a_workflow_and_watch_it_live(page: Page, fake: Fake, gw: Gateway, tmp_path: Path):
    assert httpx.get(gw.url + "/ui/app.js").status_code == 200  # static files need no key
    await open_console(page, gw)
    await expect(page.locator("#modifier-tab")).to_be_hidden()  # this gateway has no GET /modifiers
    await expect(page.locator("#queue-table tbody tr")).to_have_count(3)
    await expect(page.locator("#backends li")).to_contain_text(fake.url.split("://")[1])

    fake.control(hang=True)  # ComfyUI holds the first prompt: the console's job has to wait
    with Client(gw.url, api_key=KEY) as client:
        blocker = client.submit(empty_save(prefix="blocker"))
        await page.fill("#workflow-text", json.dumps(slow(0.6, 6, prefix="console")))
        await page.click("#submit")
        await expect(page.locator("#queue-position")).to_contain_text(
            "Waiting in the generation queue: position 1 of 1 (next in line)")
        await page.screenshot(path=str(tmp_path / "waiting.png"))
        fake.control(hang=False)

        node = page.locator(".node-progress[data-node='2']")
        await expect(node).to_contain_text("node 2 · FakeSlow")
        await expect(page.locator("#queue-position")).to_be_hidden()
        await expect(page.locator("#status-badge")).to_have_text("completed")
        await expect(node).to_contain_text("6 / 6")
        await expect(page.locator("#overall-text")).to_have_text("3 / 3")
        image = page.locator("#outputs img")
        await expect(image).to_be_visible()
        await page.wait_for_function("document.querySelector('#outputs img').naturalWidth > 0")
        assert await image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [40, 30]
        await expect(page.locator("#outputs figcaption")).to_contain_text("console_00001_.png")
        await page.screenshot(path=str(tmp_path / "done.png"))

        job_id = (await page.locator("#job-id").text_content()).strip()
        assert client.result(job_id).output[0].filename == "console_00001_.png"
        assert client.wait(blocker.id).ok
    recent = page.locator(f"#recent-jobs li[data-id='{job_id}']")
    await expect(recent).to_contain_text("completed")

    # The key survives a reload (localStorage); picking a job from the list shows it again.
    await page.reload()
    assert await page.input_value("#api-key") == KEY
    await page.locator(f"#recent-jobs li[data-id='{job_id}']").click()
    await expect(page.locator("#job-id")).to_have_text(job_id)
    await expect(page.locator("#outputs img")).to_be_visible()


async def test_errors_are_shown_in_comfyuis_words(page: Page, gw: Gateway):
    await open_console(page, gw)
    await page.fill("#workflow-text", "{not json")
    await page.click("#submit")
    await expect(page.locator("#status-text")).to_contain_text("not valid JSON")

    wf = empty_save()
    del wf["2"]["inputs"]["images"]
    await page.fill("#workflow-text", json.dumps(wf))
    await page.click("#submit")
    await expect(page.locator("#status-badge")).to_have_text("failed")
    error = page.locator("#error")
    await expect(error).to_contain_text("ComfyUI rejected the workflow")
    await expect(error).to_contain_text("node 2 · SaveImage")
    await expect(error).to_contain_text("Required input is missing: images (input images)")


async def test_modifier_form_is_built_from_the_schema(page: Page, gateway_factory, fake: Fake):
    # A gateway serving the shipped modifiers: the form comes from the real GET /modifiers.
    gw = gateway_factory(fake.url, API_KEYS=KEY, MODIFIERS_DIR=str(ROOT / "modifiers"),
                         WORKFLOWS_DIR=str(ROOT / "workflows"))
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/generate/stream") else None)
    await open_console(page, gw)
    await page.click("#modifier-tab")
    await page.select_option("#modifier-select", "BlurScale")
    await expect(page.locator("#modifier-description")).to_contain_text("Blur an image and scale it")
    assert await page.get_attribute("#param-blur_radius", "max") == "31"
    assert await page.input_value("#param-method") == '"bilinear"'
    await expect(page.locator("label[for='param-image']")).to_have_class("req")
    await page.click("#submit")
    await expect(page.locator("#status-text")).to_contain_text("image is required")
    # A URL the address guard refuses (loopback is not allowed here): nothing leaves the machine.
    await page.fill("#param-image", "http://127.0.0.1:9/cat.png")
    await page.fill("#param-blur_radius", "5")
    await page.select_option("#param-method", '"area"')
    await page.click("#submit")
    await expect(page.locator("#status-badge")).to_have_text("refused")  # a 4xx at submission
    await expect(page.locator("#error")).to_contain_text("not a public address")
    assert sent == [{"input": {"modifier": "BlurScale", "modifications": {
        "image": "http://127.0.0.1:9/cat.png", "blur_radius": 5, "sigma": 1, "width": 256, "height": 256,
        "method": "area", "prefix": "blur_scale"}}}]


async def test_a_running_job_can_be_cancelled(page: Page, fake: Fake, gw: Gateway):
    await open_console(page, gw)
    await page.fill("#workflow-text", json.dumps(slow(120, 1200, prefix="long")))
    await page.click("#submit")
    await expect(page.locator(".node-progress[data-node='2']")).to_contain_text("node 2 · FakeSlow")
    await expect(page.locator("#cancel")).to_be_enabled()
    await page.click("#cancel")
    await expect(page.locator("#status-badge")).to_have_text("cancelled")
    await expect(page.locator("#cancel")).to_be_disabled()
    job_id = (await page.locator("#job-id").text_content()).strip()
    with Client(gw.url, api_key=KEY) as client:
        assert client.result(job_id).status == "cancelled"
    # ...and ComfyUI was told: the prompt was interrupted there, not left running.
    hist = await until(lambda: httpx.get(f"{fake.url}/history/{job_id}", timeout=10).json(), "the prompt's history")
    assert "execution_interrupted" in [m[0] for m in hist[job_id]["status"]["messages"]]
