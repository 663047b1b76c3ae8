"""The console's retention screen (issue 14, point 3) in Chromium: the policy editor, a dry
run whose preview table shows every manifest with its tags, verdicts and reasons while nothing
is deleted, and the apply button under it, which deletes exactly what the preview showed; in
Chinese, then in English. Shares the browser, the `Console` helper and the screenshots folder
with test_console_browser.py."""

from __future__ import annotations

import httpx
from test_console_browser import CJK, VIEWPORT, Console, api_as, browser, unique

from support.oci import make_image, push_image
from support.server import RunningServer

try:
    from playwright.sync_api import Browser, expect
except ImportError:  # the `browser` fixture reports it
    Browser = object  # type: ignore[assignment,misc]

__all__ = ["browser"]  # the module-scoped fixture, used here too


def _tags(admin: httpx.Client, registry: str) -> set[str]:
    listed = admin.get(f"/api/v1/registries/{registry}/images/app/-/tags")
    return {tag["name"] for tag in listed.json()["items"]} if listed.status_code == 200 else set()


def test_retention_preview_then_apply(browser: Browser, server: RunningServer) -> None:
    registry = unique("retained")
    with api_as(server, server.admin) as admin:
        assert admin.post("/api/v1/registries", json={"name": registry}).status_code == 201
        for i in range(3):
            push_image(admin, f"{registry}/app", make_image(f"{registry}-{i}"), f"1.{i}")
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        console.open(f"registries/{registry}/images")
        page.click("[data-testid=retention-link]")
        expect(page.locator("[data-testid=page-retention] h1")).to_contain_text("镜像保留")
        page.click("[data-testid=add-rule]")
        rule = page.locator("[data-testid=retention-rule]")
        expect(rule).to_have_count(1)
        rule.locator("[data-field=number]").fill("1")
        page.click("[data-testid=dry-run]")
        preview = page.locator("[data-testid=plan-table]")
        expect(preview).to_be_visible()
        newest = preview.locator("tr[data-tag='1.2'] [data-testid=verdict]")
        expect(newest).to_have_text("保留")
        expect(preview.locator("tr[data-tag='1.0'] [data-testid=verdict]")).to_have_text("删除")
        expect(preview.locator("tr[data-tag='1.0']")).to_contain_text("没有规则保留")
        expect(page.locator("[data-testid=plan-summary]")).to_contain_text("删除 2 个 Tag")
        with api_as(server, server.admin) as admin:
            assert _tags(admin, registry) == {"1.0", "1.1", "1.2"}  # a dry run deletes nothing
        console.shot("retention-preview")

        page.click("[data-testid=apply-plan]")
        dialog = console.dialog("apply-dialog")
        expect(dialog).to_contain_text("2 个 Tag")
        dialog.locator("[data-role=confirm]").click()
        expect(page.locator("[data-testid=plan-result]")).to_contain_text("删除 2 个 Tag")
        expect(preview.locator("tr[data-tag='1.0'] [data-testid=outcome]")).to_have_text("已删除")
        expect(page.locator("[data-testid=apply-plan]")).to_have_count(0)  # a plan runs once
        with api_as(server, server.admin) as admin:
            assert _tags(admin, registry) == {"1.2"}
        console.shot("retention-applied")

        page.click("[data-testid=lang-switch]")
        expect(page.locator("[data-testid=page-retention] h1")).to_contain_text("Retention")
        page.click("[data-testid=dry-run]")
        expect(page.locator("[data-testid=plan-box]")).to_contain_text("Plan preview")
        expect(page.locator("[data-testid=plan-table] thead")).to_contain_text("Verdict")
        expect(page.locator("[data-testid=apply-plan]")).to_have_text("Apply plan")
        text = page.locator(".shell").inner_text()
        assert not CJK.search(text), f"untranslated text in English: {CJK.findall(text)}"
        console.shot("retention-preview-en")
        page.click("[data-testid=lang-switch]")
        console.assert_clean()
    finally:
        context.close()
