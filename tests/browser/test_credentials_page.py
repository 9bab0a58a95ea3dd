"""The Credentials page in a real headless Chromium, as a developer uses it.

Sign in with a dashboard token, add a Stripe credential (a malformed key is refused inline first),
see it listed with its type, overwrite it, add an HTTP Basic one, delete with confirmation, and go
to the Variables page and back on the same session. Throughout, no credential value may reach the
browser: not in the DOM and not in any response.
"""

import secrets as random
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import create_project
from tests.browser.test_variables_page import Responses, assert_nowhere_in_page, screenshot
from tests.support.processes import ServiceProcess

playwright = pytest.importorskip("playwright.async_api", reason="browser tests need Playwright (the dev extras)")
expect = playwright.expect

pytestmark = pytest.mark.timeout(110)


async def test_credentials_page_end_to_end(browser: Any, service: ServiceProcess, tmp_path: Path) -> None:
    project = await create_project(service, "Shop")
    first_key = "sk_test_canary" + random.token_hex(12)
    second_key = "sk_live_canary" + random.token_hex(12)
    password = "pw-canary-" + random.token_hex(12)
    values = [first_key, second_key, password]

    context = await browser.new_context(viewport={"width": 1360, "height": 860}, color_scheme="light")
    page = await context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    responses = Responses(page)

    # Sign in.
    await page.goto(f"{service.url}/credentials")
    token_field = page.get_by_label("Dashboard token")
    await expect(token_field).to_be_visible()
    await expect(page.get_by_role("heading", name="Sign in to Credentials")).to_be_visible()
    await screenshot(page, tmp_path, "credentials-sign-in.png")
    await token_field.fill(project["dashboard_token"])
    await token_field.press("Enter")
    await expect(page.locator("#project-id")).to_have_text(project["id"])
    await expect(page.get_by_text("No Credentials yet.")).to_be_visible()
    await expect(
        page.get_by_role("navigation", name="Pages").get_by_role("link", name="Credentials")
    ).to_have_attribute("aria-current", "page")

    # Add a Stripe credential: a publishable key in place of the secret key is refused inline.
    await page.get_by_role("button", name="Add credential").click()
    dialog = page.get_by_role("dialog", name="Add credential")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Name")).to_be_focused()
    await expect(dialog.get_by_label("Type")).to_have_value("stripe")
    key_field = dialog.get_by_label("Secret key", exact=True)
    assert await key_field.get_attribute("type") == "password"
    await dialog.get_by_label("Name").fill("STRIPE")
    await key_field.fill("pk_live_51HxQ2eKZvKYlo2C0aBcDeFg")
    await dialog.get_by_role("button", name="Save credential").click()
    await expect(dialog.locator("#credential-field-secret_key-error")).to_contain_text("sk_test_ or sk_live_")
    await expect(key_field).to_have_attribute("aria-invalid", "true")
    await expect(key_field).to_be_focused()
    await screenshot(page, tmp_path, "credentials-inline-error.png")
    await key_field.fill(first_key)
    await dialog.get_by_role("button", name="Save credential").click()
    await expect(dialog).to_be_hidden()
    row = page.locator("#credentials-rows tr", has_text="STRIPE")
    await expect(row).to_be_visible()
    await expect(row.locator(".type-chip")).to_have_text("Stripe")
    await expect(row.locator(".version")).to_have_text("v1")
    await expect(row.locator(".updated")).to_have_text("just now")
    await expect(page.locator("#credential-fields input")).to_have_count(0)  # the form's inputs went with it

    # Overwrite it: the fields start empty, since the old value cannot be read.
    await row.get_by_role("button", name="STRIPE", exact=True).click()
    dialog = page.get_by_role("dialog", name="Overwrite STRIPE")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Name")).to_have_attribute("readonly", "")
    await expect(dialog.get_by_label("Type")).to_have_value("stripe")
    key_field = dialog.get_by_label("Secret key", exact=True)
    await expect(key_field).to_have_value("")
    await expect(key_field).to_be_focused()
    await expect(dialog.locator("#credential-note")).to_contain_text("can't be read back")
    await screenshot(page, tmp_path, "credentials-overwrite.png")
    await key_field.fill(second_key)
    await dialog.get_by_role("button", name="Show secret key").click()  # shown while typing, never after
    assert await key_field.get_attribute("type") == "text"
    await expect(dialog.get_by_role("button", name="Hide secret key")).to_have_attribute("aria-pressed", "true")
    await dialog.get_by_role("button", name="Overwrite credential").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator(".version")).to_have_text("v2")

    # An HTTP Basic credential: choosing the type changes the fields.
    await page.get_by_role("button", name="Add credential").click()
    dialog = page.get_by_role("dialog", name="Add credential")
    await dialog.get_by_label("Name").fill("PARTNER_API")
    await dialog.get_by_label("Type").select_option(label="HTTP Basic auth")
    await expect(dialog.get_by_label("Secret key", exact=True)).to_have_count(0)
    username = dialog.get_by_label("Username")
    assert await username.get_attribute("type") == "text"
    assert await dialog.get_by_label("Password", exact=True).get_attribute("type") == "password"
    await username.fill("shop:admin")
    await dialog.get_by_label("Password", exact=True).fill(password)
    await dialog.get_by_role("button", name="Save credential").click()
    await expect(dialog.locator("#credential-field-username-error")).to_contain_text("no colon")
    await username.fill("shop")
    await dialog.get_by_role("button", name="Save credential").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#credentials-rows tr")).to_have_count(2)
    partner = page.locator("#credentials-rows tr", has_text="PARTNER_API")
    await expect(partner.locator(".type-chip")).to_have_text("HTTP Basic auth")
    await assert_nowhere_in_page(page, values)
    await screenshot(page, tmp_path, "credentials-list.png")

    # Delete: the trash icon asks first; Cancel keeps it, Delete removes it.
    await row.get_by_role("button", name="Delete credential STRIPE").click()
    confirm = page.get_by_role("dialog", name="Delete credential STRIPE?")
    await expect(confirm).to_be_visible()
    await expect(confirm).to_contain_text("credential_not_found")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(row).to_be_visible()
    await row.get_by_role("button", name="Delete credential STRIPE").click()
    await confirm.get_by_role("button", name="Delete credential").click()
    await expect(row).to_have_count(0)
    await expect(page.locator("#credentials-rows tr")).to_have_count(1)

    # The pages link to each other, on the same session.
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Variables").click()
    await expect(page).to_have_url(f"{service.url}/variables")
    await expect(page.get_by_role("tab", name="Backend Secrets")).to_have_attribute("aria-selected", "true")
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Credentials").click()
    await expect(page).to_have_url(f"{service.url}/credentials")
    await expect(page.locator("#credentials-rows tr", has_text="PARTNER_API")).to_be_visible()

    # No value anywhere the browser can see it: DOM, form fields, any response received.
    await assert_nowhere_in_page(page, values)
    received = await responses.bodies()
    for what, bodies in received.items():
        for body in bodies:
            assert all(value.encode() not in body for value in values), f"a value came back: {what}"
    puts = [w for w in received if w.startswith("PUT ") and "/credentials/" in w]
    assert sum(len(received[w]) for w in puts) == 3
    assert any(w.endswith("/api/credential-types") for w in received)
    assert [text for text in console_errors if not text.startswith("Failed to load resource")] == []

    # The service logged no value either.
    log = service.process.log_text()
    assert all(value not in log for value in values)
    await context.close()
