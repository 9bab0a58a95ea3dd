"""The Variables page in a real headless Chromium, as a developer uses it.

Sign in with a dashboard token, add a secret, see it listed, overwrite it, delete it; add a
Frontend (Build) var and watch the guardrail refuse a Stripe secret key and a copy of a secret.
Throughout, no secret value may reach the browser: not in the DOM and not in any response.
"""

import asyncio
import secrets as random
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import create_project, keep_screenshot
from tests.support.processes import ServiceProcess

playwright = pytest.importorskip("playwright.async_api", reason="browser tests need Playwright (the dev extras)")
Page, Request, expect = playwright.Page, playwright.Request, playwright.expect

pytestmark = pytest.mark.timeout(110)


class Responses:
    """Every response the page receives, with its body, read as soon as it has finished arriving."""

    def __init__(self, page: Page) -> None:
        self.seen: list[tuple[str, asyncio.Task[bytes]]] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Request) -> None:
        self.seen.append((f"{request.method} {request.url}", asyncio.ensure_future(self._body(request))))

    @staticmethod
    async def _body(request: Request) -> bytes:
        response = await request.response()
        return b"" if response is None or response.status == 204 else await response.body()

    async def bodies(self) -> dict[str, list[bytes]]:
        """Bodies by "METHOD url"; every response's body must have been readable."""
        results = await asyncio.gather(*(task for _, task in self.seen), return_exceptions=True)
        failures = [(what, r) for (what, _), r in zip(self.seen, results, strict=True) if isinstance(r, Exception)]
        assert not failures, failures
        bodies: dict[str, list[bytes]] = {}
        for (what, _), body in zip(self.seen, results, strict=True):
            bodies.setdefault(what, []).append(body)  # type: ignore[arg-type]
        return bodies


async def assert_nowhere_in_page(page: Page, values: list[str]) -> None:
    html = await page.content()
    inputs: list[str] = await page.eval_on_selector_all("input, textarea", "els => els.map(e => e.value)")
    text = await page.evaluate("document.body.innerText")
    for value in values:
        assert value not in html, "a secret value is in the DOM"
        assert value not in text, "a secret value is on screen"
        assert all(value not in field for field in inputs), "a secret value was left in a form field"


async def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    await page.evaluate("document.getElementById('toast').hidden = true")  # the page, not the last toast
    path = tmp_path / name
    await page.screenshot(path=str(path), full_page=True)
    keep_screenshot(path)
    return path


async def test_variables_page_end_to_end(browser: Any, service: ServiceProcess, tmp_path: Path) -> None:
    project = await create_project(service, "Shop")
    first_value = "whsec_canary_" + random.token_hex(12)
    second_value = "whsec_canary_" + random.token_hex(12)
    internal_value = "internal-canary-" + random.token_hex(12)
    secret_values = [first_value, second_value, internal_value]

    context = await browser.new_context(viewport={"width": 1360, "height": 860}, color_scheme="light")
    page = await context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    responses = Responses(page)

    # Sign in. A wrong token is refused inline; the dashboard token opens the page.
    await page.goto(f"{service.url}/variables")
    token_field = page.get_by_label("Dashboard token")
    await expect(token_field).to_be_visible()
    await screenshot(page, tmp_path, "variables-sign-in.png")
    await token_field.fill("bsd_wrong")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_contain_text("isn't known")
    await token_field.fill(project["dashboard_token"])
    await token_field.press("Enter")

    secrets_tab = page.get_by_role("tab", name="Backend Secrets")
    await expect(secrets_tab).to_have_attribute("aria-selected", "true")  # open by default
    await expect(page.locator("#project-id")).to_have_text(project["id"])
    await expect(page.get_by_text("No Backend Secrets yet.")).to_be_visible()
    cookies = await context.cookies()
    session = next(c for c in cookies if c["name"] == "bs_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"

    # Add a secret: a bad name is refused inline first.
    await page.get_by_role("button", name="Add secret").click()
    dialog = page.get_by_role("dialog", name="Add secret")
    await expect(dialog).to_be_visible()
    value_field = dialog.get_by_label("Value", exact=True)
    assert await value_field.get_attribute("type") == "password"
    await dialog.get_by_label("Name").fill("1NOT-A-NAME")
    await value_field.fill(first_value)
    await dialog.get_by_role("button", name="Save secret").click()
    await expect(dialog.locator("#secret-name-error")).to_contain_text("letters, digits and _")
    await expect(dialog.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    await dialog.get_by_label("Name").fill("STRIPE_WEBHOOK_SIGNING_KEY")
    await dialog.get_by_role("button", name="Save secret").click()
    await expect(dialog).to_be_hidden()
    row = page.locator("#secrets-rows tr", has_text="STRIPE_WEBHOOK_SIGNING_KEY")
    await expect(row).to_be_visible()
    await expect(row.locator(".version")).to_have_text("v1")
    await expect(row.locator(".updated")).to_have_text("just now")

    # Overwrite it: the form's value starts empty, since the old value cannot be read.
    await row.get_by_role("button", name="STRIPE_WEBHOOK_SIGNING_KEY", exact=True).click()
    dialog = page.get_by_role("dialog", name="Overwrite STRIPE_WEBHOOK_SIGNING_KEY")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("New value")).to_have_value("")
    await expect(dialog.get_by_label("Name")).to_have_attribute("readonly", "")
    await screenshot(page, tmp_path, "variables-overwrite-secret.png")
    await dialog.get_by_label("New value").fill(second_value)
    await dialog.get_by_role("button", name="Overwrite secret").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator(".version")).to_have_text("v2")

    # A second secret, entered with the keyboard alone.
    await page.get_by_role("button", name="Add secret").focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add secret")
    await expect(dialog.get_by_label("Name")).to_be_focused()
    await page.keyboard.type("INTERNAL_API_TOKEN")
    await page.keyboard.press("Tab")
    await page.keyboard.type(internal_value)
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#secrets-rows tr")).to_have_count(2)
    await assert_nowhere_in_page(page, secret_values)
    await screenshot(page, tmp_path, "variables-backend-secrets.png")

    # Delete: the trash icon asks first; Cancel keeps it, Delete removes it.
    await row.get_by_role("button", name="Delete secret STRIPE_WEBHOOK_SIGNING_KEY").click()
    confirm = page.get_by_role("dialog", name="Delete secret STRIPE_WEBHOOK_SIGNING_KEY?")
    await expect(confirm).to_be_visible()
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(row).to_be_visible()
    await row.get_by_role("button", name="Delete secret STRIPE_WEBHOOK_SIGNING_KEY").click()
    await confirm.get_by_role("button", name="Delete secret").click()
    await expect(row).to_have_count(0)
    await expect(page.locator("#secrets-rows tr")).to_have_count(1)

    # Frontend (Build): reached with the arrow key, lists names with their values.
    await secrets_tab.focus()
    await page.keyboard.press("ArrowRight")
    frontend_tab = page.get_by_role("tab", name="Frontend (Build)")
    await expect(frontend_tab).to_have_attribute("aria-selected", "true")
    await expect(frontend_tab).to_be_focused()
    for name, value in [("API_BASE_URL", "https://api.shop.example"), ("VITE_STRIPE_PK", "pk_live_51Hx0abc")]:
        await page.get_by_role("button", name="Add variable").click()
        dialog = page.get_by_role("dialog", name="Add variable")
        await dialog.get_by_label("Name").fill(name)
        await dialog.get_by_label("Value").fill(value)
        await dialog.get_by_role("button", name="Save variable").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#vars-rows tr", has_text=name).locator(".value")).to_have_text(value)

    # Edit one.
    await page.get_by_role("button", name="Edit variable API_BASE_URL").click()
    dialog = page.get_by_role("dialog", name="Edit API_BASE_URL")
    await expect(dialog.get_by_label("Value")).to_have_value("https://api.shop.example")
    await dialog.get_by_label("Value").fill("https://api.shop.example/v2")
    await dialog.get_by_role("button", name="Save variable").click()
    await expect(page.locator("#vars-rows tr", has_text="API_BASE_URL").locator(".value")).to_have_text(
        "https://api.shop.example/v2"
    )
    await screenshot(page, tmp_path, "variables-frontend.png")

    # The guardrail refuses a Stripe secret key, and says where it belongs.
    await page.get_by_role("button", name="Add variable").click()
    dialog = page.get_by_role("dialog", name="Add variable")
    await dialog.get_by_label("Name").fill("VITE_STRIPE_KEY")
    await dialog.get_by_label("Value").fill("sk_live_51HxQ2eKZvKYlo2C0aBcDeFg")
    await dialog.get_by_role("button", name="Save variable").click()
    guardrail = dialog.locator("#var-guardrail")
    await expect(guardrail).to_be_visible()
    await expect(guardrail).to_contain_text("Stripe secret key")
    await expect(guardrail).to_contain_text("Backend Secret")
    await screenshot(page, tmp_path, "variables-frontend-guardrail.png")

    # ... and an exact copy of a Backend Secret, which it knows only by fingerprint.
    await dialog.get_by_label("Value").fill(internal_value)
    await dialog.get_by_role("button", name="Save variable").click()
    await expect(guardrail).to_contain_text("INTERNAL_API_TOKEN")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#vars-rows tr")).to_have_count(2)

    # Delete a var.
    await page.get_by_role("button", name="Delete variable VITE_STRIPE_PK").click()
    await (
        page.get_by_role("dialog", name="Delete variable VITE_STRIPE_PK?")
        .get_by_role("button", name="Delete variable")
        .click()
    )
    await expect(page.locator("#vars-rows tr")).to_have_count(1)

    # No secret value anywhere the browser can see it: DOM, form fields, any response received.
    await assert_nowhere_in_page(page, [first_value, second_value])
    received = await responses.bodies()
    for what, bodies in received.items():
        for body in bodies:
            assert all(value.encode() not in body for value in [first_value, second_value]), (
                f"a value came back: {what}"
            )
    assert sum(len(b) for w, b in received.items() if w.startswith("GET ") and w.endswith("/secrets")) >= 4
    assert sum(len(b) for w, b in received.items() if w.startswith("PUT ") and "/secrets/" in w) == 3

    # Sign out: back to the sign-in form, and the API no longer answers the old cookie.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Dashboard token")).to_be_visible()
    await expect(page.locator("#signin-notice")).to_have_text("You have signed out.")
    status = await page.evaluate(f"fetch('/api/projects/{project['id']}/secrets').then(r => r.status)")
    assert status == 401
    assert [text for text in console_errors if not text.startswith("Failed to load resource")] == []

    # The service logged no value either.
    log = service.process.log_text()
    assert all(value not in log for value in secret_values)
    await context.close()


async def test_the_page_refuses_to_run_inline_script(browser: Any, service: ServiceProcess) -> None:
    """The CSP is enforced by the browser: a script injected inline does not run."""
    context = await browser.new_context()
    page = await context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    await page.goto(f"{service.url}/variables")
    await expect(page.get_by_label("Dashboard token")).to_be_visible()  # the page's own script runs
    ran = await page.evaluate(
        """() => new Promise(resolve => {
            window.__inline = false;
            const s = document.createElement('script');
            s.textContent = 'window.__inline = true';
            document.body.appendChild(s);
            setTimeout(() => resolve(window.__inline), 100);
        })"""
    )
    assert ran is False
    assert any("Content Security Policy" in text for text in violations)
    await context.close()
