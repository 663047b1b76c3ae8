"""The web console (issue 5) in a real browser: Playwright driving Debian's Chromium against a
real server process, following the user guide (../shared/seed): sign in, create a private
registry with a remark, a project group and labels, push two images with the docker CLI, read
the image and tag lists (digests, pull commands, copy buttons), pull and watch the count rise,
make the registry public and find it signed out in the shared registries, modify labels, delete
a tag, the last tag of an image, an image and a registry (refused until the box is ticked),
batch-delete two registries, and switch to English and back.

Every screen is saved to tests/artifacts/console/. The safety cases are tests of their own and
fail when the protection they name is removed: a remark of `<script>alert(1)</script>` shows as
text (escaping); a cookie-authenticated POST without `X-CSRF-Token` is refused (the CSRF check);
a form posted from another site carries no session (the SameSite cookie) and changes nothing;
an inline script on the console's origin does not run (the Content-Security-Policy).
"""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))

from clienttools import Docker, find_tool, push_image_http, pushed_digest, unavailable

from support.images import build_image, build_index, rootfs_tar
from support.server import RunningServer

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # the `browser` fixture reports it (skip, or fail in the full run)
    sync_playwright = None

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
STATIC = Path(__file__).resolve().parents[2] / "src" / "ociregistry" / "console" / "static"
WAIT_MS = 15_000  # a poll runs every 3 s; a pull shows in the API within 1 s
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable("the playwright package is not installed (pip install -e .[test])")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium fonts-wqy-microhei)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def user(server: RunningServer) -> tuple[str, str]:
    """A non-admin user, created by the platform admin through the API."""
    username, password = f"dev{uuid.uuid4().hex[:8]}", "console-password-1"
    created = httpx.post(
        f"{server.url}/api/v1/users",
        json={"username": username, "password": password},
        auth=server.admin,
    )
    assert created.status_code == 201, created.text
    return username, password


@pytest.fixture(scope="module")
def docker(
    server: RunningServer, user: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Docker]:
    """The docker CLI signed in as `user`, with a DOCKER_CONFIG of its own."""
    client = Docker(
        find_tool("docker", "OCIREGISTRY_DOCKER"), tmp_path_factory.mktemp("console-docker")
    )
    info = client("version", "--format", "{{.Server.Version}}", check=False)
    if info.returncode != 0:
        unavailable(f"the docker daemon does not answer:\n{info.describe()}")
    login = client.login(server.address, *user)
    assert "Login Succeeded" in login.output, login.describe()
    yield client
    client.cleanup()
    client.logout(server.address)


class Console:
    """One browser tab on the console, with the JavaScript dialogs and page errors it saw."""

    def __init__(self, context: BrowserContext, server: RunningServer) -> None:
        self.context = context
        self.server = server
        self.page: Page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.js_dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _on_dialog(self, dialog: Any) -> None:
        self.js_dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, route: str = "") -> Console:
        self.page.goto(f"{self.server.url}/console/#/{route}")
        self.page.wait_for_selector("body[data-ready=true]")
        return self

    def shot(self, name: str) -> None:
        """Save the screen, without the toasts of earlier steps (they fade after 3 s)."""
        self.page.evaluate("document.getElementById('toasts')?.replaceChildren()")
        self.page.wait_for_timeout(100)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def sign_in(self, username: str, password: str) -> Console:
        self.open("signin")
        self.page.fill("[data-testid=username]", username)
        self.page.fill("[data-testid=password]", password)
        self.page.click("[data-testid=signin-form] button[type=submit]")
        expect(self.page.locator("[data-testid=current-user]")).to_have_text(username)
        return self

    def search(self, text: str) -> None:
        """Type into the list's search box, as a user looking for one name among many would:
        lists shared by every test (shared registries, platform images) run to many pages."""
        self.page.fill("[data-testid=search]", text)
        self.page.press("[data-testid=search]", "Enter")

    def table(self, testid: str) -> Any:
        return self.page.locator(f'[data-testid="{testid}"] tbody')

    def row(self, testid: str, key: str) -> Any:
        return self.page.locator(f'[data-testid="{testid}"] tbody tr[data-key="{key}"]')

    def dialog(self, testid: str) -> Any:
        return self.page.locator(f'[data-testid="{testid}"]')

    def clipboard(self) -> str:
        return self.page.evaluate("navigator.clipboard.readText()")

    def assert_clean(self) -> None:
        assert self.js_dialogs == [], f"JavaScript dialogs fired: {self.js_dialogs}"
        assert self.errors == [], f"page errors: {self.errors}"


@pytest.fixture
def context(browser: Browser, server: RunningServer) -> Iterator[BrowserContext]:
    ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    yield ctx
    ctx.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api_as(server: RunningServer, auth: tuple[str, str]) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=auth, timeout=30.0)


def short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


# --- the user guide, screen by screen ---------------------------------------------------------


def test_user_guide_walkthrough(
    context: BrowserContext,
    browser: Browser,
    server: RunningServer,
    user: tuple[str, str],
    docker: Docker,
    tmp_path: Path,
) -> None:
    username, password = user
    console = Console(context, server)
    page = console.page
    registry = unique("web")
    group = f"{username}-team"
    address = server.address

    # Signed out, the console opens on the shared registries; sign in from there.
    console.open()
    expect(page.locator("[data-testid=page-shared]")).to_be_visible()
    page.click("[data-testid=sign-in-link]")
    expect(page.locator("[data-testid=page-signin]")).to_be_visible()
    console.shot("01-signin")
    page.fill("[data-testid=username]", username)
    page.fill("[data-testid=password]", "wrong-password")
    page.click("[data-testid=signin-form] button[type=submit]")
    expect(page.locator("[data-testid=signin-error]")).to_have_text("用户名或密码错误")
    console.sign_in(username, password)
    expect(page.locator("[data-testid=page-registries]")).to_be_visible()

    # A project group for the registry, and a member in it.
    page.click("[data-nav=groups]")
    page.click("[data-testid=create-group]")
    page.fill("[data-testid=group-name]", group)
    page.fill("[data-testid=group-description]", "web team")
    page.click("[data-testid=group-dialog] [data-role=confirm]")
    expect(console.row("group-table", group)).to_contain_text("所有者")
    console.shot("02-project-groups")
    console.row("group-table", group).locator("[data-op=members]").click()
    page.fill("[data-testid=member-username]", "admin")
    page.select_option("[data-testid=member-role]", "guest")
    page.click("[data-testid=add-member] button[type=submit]")
    expect(console.row("member-table", "admin")).to_be_visible()
    expect(console.row("member-table", username)).to_be_visible()
    console.shot("03-group-members")

    # Create a private registry with a remark, the group and two labels; the name is checked
    # as it is typed.
    page.click("[data-nav=registries]")
    page.click("[data-testid=create-registry]")
    create = console.dialog("create-dialog")
    name_field = create.locator(".field").first
    page.fill("[data-testid=name]", "Web_Team")
    expect(name_field.locator(".field-error")).to_contain_text("只能包含小写字母")
    page.fill("[data-testid=name]", "w")
    expect(name_field.locator(".field-error")).to_have_text("名称至少 2 个字符")
    page.fill("[data-testid=name]", "web-")
    expect(name_field.locator(".field-error")).to_contain_text("开头和结尾")
    page.fill("[data-testid=name]", registry)
    expect(name_field.locator(".field-error")).to_be_hidden()
    page.fill("[data-testid=remark]", "images of the web team")
    page.select_option("[data-testid=group]", group)
    expect(create.locator("[data-testid=private]")).to_be_checked()
    for key, value in (("env", "prod"), ("owner", "web")):
        page.click("[data-testid=label-add]")
        create.locator(".label-row").last.locator(".label-key").fill(key)
        create.locator(".label-row").last.locator(".label-value").fill(value)
    console.shot("04-create-registry")
    create.locator("[data-role=confirm]").click()
    expect(create).to_be_hidden()
    row = console.row("registry-table", registry)
    expect(row).to_contain_text("私有")
    expect(row).to_contain_text(group)
    expect(row).to_contain_text("env: prod")
    expect(row).to_contain_text("images of the web team")
    expect(row).to_contain_text("可用")

    # The same name again: the API's REGISTRY_EXISTS shows, in Chinese, under the name field.
    page.click("[data-testid=create-registry]")
    page.fill("[data-testid=name]", registry)
    create.locator("[data-role=confirm]").click()
    expect(name_field.locator(".field-error")).to_contain_text("已被使用")
    console.shot("05-create-registry-error")
    create.locator("[data-role=cancel]").click()

    # Push two images with the real docker CLI: app:1.0 and web:1.0 are image A, app:2.0 and
    # tools/lint:1.0 are image B.
    first = docker.import_tar(rootfs_tar(tmp_path / "a.tar", f"{registry}-a"), f"{registry}-a:src")
    second = docker.import_tar(rootfs_tar(tmp_path / "b.tar", f"{registry}-b"), f"{registry}-b:src")
    digests: dict[str, str] = {}
    for source, target in (
        (first, "app:1.0"),
        (first, "web:1.0"),
        (second, "app:2.0"),
        (second, "tools/lint:1.0"),
    ):
        reference = f"{address}/{registry}/{target}"
        docker.tag(source, reference)
        digests[target] = pushed_digest(docker("push", reference).output)
    # The list polls: the image count rises without a reload.
    expect(row.locator("td").nth(5)).to_have_text("3")
    console.shot("06-registries")

    # The image list: names, latest tags, pull commands with a copy button.
    row.get_by_role("link", name=registry).click()
    images = console.table("image-table")
    expect(images.locator("tr")).to_have_count(3)
    app_row = console.row("image-table", "app")
    expect(app_row.locator("td").nth(2)).to_have_text("2.0")
    pull_app = f"docker pull {address}/{registry}/app:2.0"
    expect(app_row.locator(".command code")).to_have_text(pull_app)
    expect(console.row("image-table", "tools/lint")).to_be_visible()
    expect(page.locator("[data-testid=image-count]")).to_have_text("3")
    app_row.locator("button.copy").click()
    expect(page.locator(".toast", has_text="已复制").first).to_be_visible()
    assert console.clipboard() == pull_app
    page.locator(".help-box summary").click()
    expect(page.locator(".help-box")).to_contain_text(f"docker push {address}/{registry}/")
    console.shot("07-images")

    # The tag list: digests shortened with the full one on hover and copy, pull commands.
    app_row.locator("[data-op=tags]").click()
    expect(console.table("tag-table").locator("tr")).to_have_count(2)
    tag_row = console.row("tag-table", "2.0")
    digest_code = tag_row.locator("code.digest")
    expect(digest_code).to_have_text(short(digests["app:2.0"]))
    expect(digest_code).to_have_attribute("title", digests["app:2.0"])
    expect(console.row("tag-table", "1.0").locator("code.digest")).to_have_attribute(
        "title", digests["app:1.0"]
    )
    expect(tag_row.locator("td .command code").nth(1)).to_have_text(pull_app)
    pulls = tag_row.locator("[data-testid=pulls]")
    expect(pulls).to_have_text("0")
    tag_row.locator("button.copy").first.click()
    expect(page.locator(".toast", has_text="已复制").first).to_be_visible()
    assert console.clipboard() == digests["app:2.0"]
    console.shot("08-tags")

    # Pull it with docker (untagged locally first, so docker must fetch the manifest): the
    # tag's and the image's counts rise on the open page.
    docker("rmi", f"{address}/{registry}/app:2.0")
    docker.pull(f"{address}/{registry}/app:2.0")
    expect(pulls).to_have_text("1")
    expect(page.locator("[data-testid=image-pulls]")).to_have_text("1")
    console.shot("09-tags-after-pull")
    page.locator(".crumbs a").nth(1).click()
    expect(console.row("image-table", "app").locator("[data-testid=pulls]")).to_have_text("1")

    # Make the registry public (modify), then find it signed out in the shared registries.
    page.click("[data-nav=registries]")
    row.locator("[data-op=modify]").click()
    modify = console.dialog("modify-dialog")
    expect(modify.locator("[data-testid=private]")).to_be_checked()
    modify.locator("[data-testid=public]").check()
    console.shot("10-modify-visibility")
    modify.locator("[data-role=confirm]").click()
    expect(row).to_contain_text("公有")

    anonymous = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        visitor = Console(anonymous, server).open("shared")
        visitor.search(registry)
        shared_row = visitor.row("shared-table", registry)
        expect(shared_row).to_contain_text("公有")
        expect(shared_row).to_contain_text("env: prod")
        expect(visitor.page.locator("[data-testid=sign-in-link]")).to_be_visible()
        visitor.shot("11-shared-registries-signed-out")
        shared_row.get_by_role("link", name=registry).click()
        expect(visitor.table("image-table").locator("tr")).to_have_count(3)
        # Read-only: no check boxes, no delete.
        expect(
            visitor.page.locator("[data-testid=image-table] input[type=checkbox]")
        ).to_have_count(0)
        expect(visitor.page.locator("[data-op=delete]")).to_have_count(0)
        visitor.shot("12-shared-images")
        visitor.row("image-table", "app").locator("[data-op=tags]").click()
        expect(visitor.table("tag-table").locator("tr")).to_have_count(2)
        expect(visitor.page.locator("[data-op=delete]")).to_have_count(0)
        expect(visitor.row("tag-table", "2.0").locator("[data-testid=pulls]")).to_have_text("1")
        visitor.shot("13-shared-tags")
        visitor.assert_clean()
    finally:
        anonymous.close()

    # Modify labels: change one, remove one, add one.
    row.locator("[data-op=labels]").click()
    labels = console.dialog("labels-dialog")
    expect(labels.locator(".label-row")).to_have_count(2)
    labels.locator(".label-row").nth(0).locator(".label-value").fill("staging")
    labels.locator(".label-row").nth(1).get_by_role("button").click()
    page.click("[data-testid=label-add]")
    labels.locator(".label-row").last.locator(".label-key").fill("tier")
    labels.locator(".label-row").last.locator(".label-value").fill("backend")
    expect(labels.locator(".label-row").nth(0).locator(".label-key")).to_have_value("env")
    console.shot("14-modify-labels")
    labels.locator("[data-role=confirm]").click()
    expect(row).to_contain_text("env: staging")
    expect(row).to_contain_text("tier: backend")
    expect(row).not_to_contain_text("owner: web")

    # Filter by label and group, search by name.
    page.fill("[data-testid=label-filter]", "env:staging")
    page.press("[data-testid=label-filter]", "Enter")
    expect(console.table("registry-table").locator("tr")).to_have_count(1)
    page.fill("[data-testid=label-filter]", "env:none")
    page.press("[data-testid=label-filter]", "Enter")
    expect(console.table("registry-table").locator("tr")).to_have_count(0)
    expect(page.locator("[data-testid=registry-table] .table-message")).to_have_text("暂无数据")
    page.fill("[data-testid=label-filter]", "")
    page.press("[data-testid=label-filter]", "Enter")
    page.select_option("[data-testid=group-filter]", group)
    page.fill("[data-testid=search]", registry[4:])
    page.press("[data-testid=search]", "Enter")
    expect(console.table("registry-table").locator("tr")).to_have_count(1)
    expect(row).to_be_visible()
    page.select_option("[data-testid=group-filter]", "")

    # Switch to English, keep it across a reload, and switch back.
    page.click("[data-testid=lang-switch]")
    expect(page.locator("[data-nav=registries]")).to_have_text("User registries")
    expect(page.locator("[data-testid=registry-table] thead")).to_contain_text("Name / resource ID")
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(row).to_contain_text("Public")
    text = page.locator(".shell").inner_text()  # all but the switch, which says 中文
    assert not CJK.search(text), f"untranslated text in English: {CJK.findall(text)}"
    console.shot("15-registries-english")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("[data-nav=registries]")).to_have_text("User registries")
    page.click("[data-testid=lang-switch]")
    expect(page.locator("[data-nav=registries]")).to_have_text("用户镜像库")
    expect(page.locator("[data-testid=registry-table] thead")).to_contain_text("名称/资源ID")

    # Delete a tag (app:1.0): app stays with 2.0.
    console.open(f"registries/{registry}/images/app/tags")
    console.row("tag-table", "1.0").locator("[data-op=delete]").click()
    delete = console.dialog("delete-dialog")
    expect(delete).to_contain_text(f"{registry}/app:1.0")
    expect(delete.locator("[data-testid=last-tag]")).to_have_count(0)
    delete.locator("[data-role=confirm]").click()
    expect(console.table("tag-table").locator("tr")).to_have_count(1)

    # Delete the last tag (app:2.0): the dialog says the image goes too, and it does.
    console.row("tag-table", "2.0").locator("[data-op=delete]").click()
    expect(delete.locator("[data-testid=last-tag]")).to_contain_text("镜像会一同删除")
    console.shot("16-delete-last-tag")
    delete.locator("[data-role=confirm]").click()
    expect(page.locator("[data-testid=page-images]")).to_be_visible()
    expect(console.table("image-table").locator("tr")).to_have_count(2)
    expect(console.row("image-table", "app")).to_have_count(0)

    # Delete an image (tools/lint) with its tags.
    console.row("image-table", "tools/lint").locator("[data-op=delete]").click()
    expect(delete).to_contain_text(f"{registry}/tools/lint")
    expect(delete).to_contain_text("共 1 个")
    console.shot("17-delete-image")
    delete.locator("[data-role=confirm]").click()
    expect(console.table("image-table").locator("tr")).to_have_count(1)
    expect(console.row("image-table", "web")).to_be_visible()

    # Delete the registry: it holds an image, so the dialog refuses until the box is ticked,
    # then shows "deleting" until the registry is gone.
    page.click("[data-nav=registries]")
    row.locator("[data-op=delete]").click()
    expect(delete).to_contain_text(registry)
    expect(delete).to_contain_text("1 个镜像（共 1 个Tag）")
    confirm = delete.locator("[data-role=confirm]")
    expect(confirm).to_be_disabled()
    tick = delete.locator("[data-testid=delete-images]")
    expect(delete.locator(".check-row")).to_have_text("删除镜像仓库中所有镜像")
    console.shot("18-delete-registry-refused")
    tick.check()
    expect(confirm).to_be_enabled()
    tick.uncheck()
    expect(confirm).to_be_disabled()
    tick.check()
    console.shot("19-delete-registry-ticked")
    page.evaluate(
        """() => {
        window.__sawDeleting = false;
        const seen = () => {
          const dialog = document.querySelector('[data-testid=delete-dialog]');
          if (dialog && dialog.textContent.includes('删除中')) window.__sawDeleting = true;
        };
        new MutationObserver(seen).observe(
          document.body, {subtree: true, childList: true, characterData: true});
      }"""
    )
    confirm.click()
    expect(delete).to_be_hidden(timeout=60_000)
    assert page.evaluate("window.__sawDeleting"), "the dialog never said 删除中 (deleting)"
    expect(row).to_have_count(0)
    with api_as(server, user) as http:
        assert http.get(f"/api/v1/registries/{registry}").status_code == 404

    # Batch-delete two registries, one of them holding an image (pushed over HTTP).
    empty, holding = unique("batch-a"), unique("batch-b")
    with api_as(server, user) as http:
        for name in (empty, holding):
            assert http.post("/api/v1/registries", json={"name": name}).status_code == 201
        push_image_http(http, f"{holding}/tool", build_image(holding), "1.0")
    page.get_by_role("button", name="刷新").click()
    for name in (empty, holding):
        console.row("registry-table", name).locator("input[type=checkbox]").check()
    batch = page.locator("[data-testid=batch-delete]")
    expect(batch).to_have_text("批量删除（2）")
    batch.click()
    dialog = console.dialog("batch-delete-dialog")
    expect(dialog.locator(f'li[data-name="{empty}"]')).to_contain_text("没有镜像")
    expect(dialog.locator(f'li[data-name="{holding}"]')).to_contain_text("1 个镜像")
    expect(dialog.locator("[data-role=confirm]")).to_be_disabled()
    dialog.locator("[data-testid=delete-images]").check()
    console.shot("20-batch-delete")
    dialog.locator("[data-role=confirm]").click()
    expect(dialog).to_be_hidden(timeout=60_000)
    for name in (empty, holding):
        expect(console.row("registry-table", name)).to_have_count(0)

    # Sign out.
    page.click("[data-testid=sign-out]")
    expect(page.locator("[data-testid=page-signin]")).to_be_visible()
    console.open("registries")
    expect(page.locator("[data-testid=page-signin]")).to_be_visible()
    console.assert_clean()


def test_batch_delete_tags_and_images(
    context: BrowserContext, server: RunningServer, user: tuple[str, str]
) -> None:
    registry = unique("batch")
    with api_as(server, user) as http:
        assert http.post("/api/v1/registries", json={"name": registry}).status_code == 201
        for image, tags in (
            ("api", ("1.0", "1.1", "1.2")),
            ("worker", ("1.0",)),
            ("cron", ("1.0",)),
        ):
            for tag in tags:
                push_image_http(
                    http, f"{registry}/{image}", build_image(f"{registry}{image}{tag}"), tag
                )
    console = Console(context, server).sign_in(*user)
    page = console.page

    # Two of the three tags: the image stays.
    console.open(f"registries/{registry}/images/api/tags")
    expect(console.table("tag-table").locator("tr")).to_have_count(3)
    for tag in ("1.0", "1.1"):
        console.row("tag-table", tag).locator("input[type=checkbox]").check()
    page.click("[data-testid=batch-delete]")
    dialog = console.dialog("batch-delete-dialog")
    expect(dialog.locator("li")).to_have_count(2)
    expect(dialog.locator("[data-testid=last-tag]")).to_have_count(0)
    console.shot("21-batch-delete-tags")
    dialog.locator("[data-role=confirm]").click()
    expect(console.table("tag-table").locator("tr")).to_have_count(1)

    # All that are left (select all): the dialog says the image goes too, and it does.
    page.check("[data-testid=tag-table] [data-testid=select-all]")
    page.click("[data-testid=batch-delete]")
    expect(dialog.locator("[data-testid=last-tag]")).to_contain_text("镜像会一同删除")
    dialog.locator("[data-role=confirm]").click()
    expect(page.locator("[data-testid=page-images]")).to_be_visible()
    expect(console.row("image-table", "api")).to_have_count(0)

    # Both remaining images at once; the dialog names them and counts their tags.
    expect(console.table("image-table").locator("tr")).to_have_count(2)
    page.check("[data-testid=image-table] [data-testid=select-all]")
    expect(page.locator("[data-testid=batch-delete]")).to_have_text("批量删除（2）")
    page.click("[data-testid=batch-delete]")
    expect(dialog).to_contain_text("2 个镜像")
    expect(dialog.locator('li[data-name="worker"]')).to_contain_text(f"{registry}/worker")
    console.shot("22-batch-delete-images")
    dialog.locator("[data-role=confirm]").click()
    expect(console.table("image-table").locator("tr")).to_have_count(0)
    expect(page.locator("[data-testid=image-table] .table-message")).to_contain_text("还没有镜像")
    console.assert_clean()


def test_guests_and_developers_see_only_what_their_role_allows(
    browser: Browser, server: RunningServer, user: tuple[str, str]
) -> None:
    """SPEC §2 in the console: a group guest gets no delete buttons or check boxes, a
    developer may delete images and tags but not change or delete the registry. The server
    refuses all of it anyway; the console must not offer what will be refused."""
    group, registry = unique("crew"), unique("roles")
    people = {
        role: (unique(role[:5]), f"{role}-console-password") for role in ("guest", "developer")
    }
    with api_as(server, server.admin) as admin:
        for username, password in people.values():
            created = admin.post("/api/v1/users", json={"username": username, "password": password})
            assert created.status_code == 201, created.text
    with api_as(server, user) as http:
        assert http.post("/api/v1/project-groups", json={"name": group}).status_code == 201
        for role, (username, _) in people.items():
            member = http.put(
                f"/api/v1/project-groups/{group}/members/{username}", json={"role": role}
            )
            assert member.status_code == 200, member.text
        created = http.post("/api/v1/registries", json={"name": registry, "project_group": group})
        assert created.status_code == 201, created.text
        push_image_http(http, f"{registry}/app", build_image(registry), "1.0")

    for role, credentials in people.items():
        context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)  # a session of its own
        console = Console(context, server).sign_in(*credentials)
        page = console.page
        row = console.row("registry-table", registry)
        expect(row).to_contain_text(group)
        for op in ("modify", "labels", "delete"):
            expect(row.locator(f"[data-op={op}]")).to_be_disabled()
        expect(row.locator("[data-op=delete]")).to_have_attribute(
            "title", "只有项目组的所有者可以修改或删除此镜像库"
        )
        expect(row.locator("input[type=checkbox]")).to_have_count(0)

        console.open(f"registries/{registry}/images")
        image = console.row("image-table", "app")
        expect(image).to_contain_text("1.0")
        may_delete = role == "developer"
        expect(image.locator("[data-op=delete]")).to_have_count(1 if may_delete else 0)
        commands = page.locator("[data-testid=page-images] details.help-box")
        title = "上传和拉取镜像" if may_delete else "拉取镜像"  # push and pull, or pull only
        expect(commands.locator("summary")).to_have_text(title)
        if may_delete:
            expect(commands).to_contain_text(f"docker push {server.address}/{registry}/")
        else:  # a guest may not push: no push command to copy
            expect(commands).not_to_contain_text("docker push")
        batch = page.locator("[data-testid=batch-delete]")
        checkboxes = page.locator("[data-testid=image-table] input[type=checkbox]:visible")
        if may_delete:
            expect(batch).to_be_visible()
            expect(checkboxes).to_have_count(2)  # select-all and the row
        else:
            expect(batch).to_be_hidden()
            expect(checkboxes).to_have_count(0)
        console.shot(f"26-images-as-{role}")

        image.locator("[data-op=tags]").click()
        tag = console.row("tag-table", "1.0")
        expect(tag).to_contain_text("sha256:")
        expect(tag.locator("[data-op=delete]")).to_have_count(1 if may_delete else 0)
        tag_boxes = page.locator("[data-testid=tag-table] input[type=checkbox]:visible")
        expect(tag_boxes).to_have_count(2 if may_delete else 0)
        console.assert_clean()
        context.close()


def test_registry_list_searches_filters_sorts_and_pages(
    browser: Browser, server: RunningServer
) -> None:
    """The list of guide 37.2: search by name, filter by group and label, sort, page size
    and paging, each reading the same /api/v1 list the API tests check."""
    username, password = unique("lister"), "lister-console-password"
    group, prefix = unique("side"), unique("pg")
    with api_as(server, server.admin) as admin:
        created = admin.post("/api/v1/users", json={"username": username, "password": password})
        assert created.status_code == 201, created.text
    names = [f"{prefix}-{n:02d}" for n in range(23)]
    with api_as(server, (username, password)) as http:
        assert http.post("/api/v1/project-groups", json={"name": group}).status_code == 201
        for n, name in enumerate(names):
            body: dict[str, Any] = {"name": name, "labels": {"env": "prod" if n % 4 else "test"}}
            if n % 3 == 0:
                body["project_group"] = group
            response = http.post("/api/v1/registries", json=body)
            assert response.status_code == 201, response.text
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(username, password)
        page = console.page
        rows = console.table("registry-table").locator("tr")
        total = page.locator("[data-testid=registry-table] .pager-total")
        pages = page.locator("[data-testid=registry-table] .pager-page")

        # 23 registries, 20 to a page, by name.
        expect(total).to_have_text("共 23 条")
        expect(pages).to_have_text("第 1/2 页")
        expect(rows).to_have_count(20)
        expect(rows.first).to_have_attribute("data-key", names[0])
        page.click("[data-testid=registry-table] .pager button:has-text('下一页')")
        expect(pages).to_have_text("第 2/2 页")
        expect(rows).to_have_count(3)
        expect(rows.last).to_have_attribute("data-key", names[-1])
        # Page 2 came by the list's cursor (`next`); the one before is page 1 again.
        page.click("[data-testid=registry-table] .pager button:has-text('上一页')")
        expect(pages).to_have_text("第 1/2 页")
        expect(rows.first).to_have_attribute("data-key", names[0])
        page.click("[data-testid=registry-table] .pager button:has-text('下一页')")
        expect(rows.first).to_have_attribute("data-key", names[20])
        page.select_option("[data-testid=registry-table] .pager-size", "50")
        expect(pages).to_have_text("第 1/1 页")
        expect(rows).to_have_count(23)

        # Sorting: name descending puts the last first.
        page.select_option("[data-testid=sort]", "-name")
        expect(rows.first).to_have_attribute("data-key", names[-1])

        # Search by part of the name: -1x matches ten.
        page.fill("[data-testid=search]", f"{prefix}-1")
        page.press("[data-testid=search]", "Enter")
        expect(total).to_have_text("共 10 条")
        expect(rows).to_have_count(10)
        page.fill("[data-testid=search]", "")
        page.press("[data-testid=search]", "Enter")
        expect(total).to_have_text("共 23 条")

        # The project group filter, then a label filter on top of it.
        in_group = [name for n, name in enumerate(names) if n % 3 == 0]
        page.select_option("[data-testid=group-filter]", group)
        expect(total).to_have_text(f"共 {len(in_group)} 条")
        page.fill("[data-testid=label-filter]", "env:test")
        page.press("[data-testid=label-filter]", "Enter")
        in_group_test = [name for n, name in enumerate(names) if n % 3 == 0 and n % 4 == 0]
        expect(total).to_have_text(f"共 {len(in_group_test)} 条")
        expect(rows).to_have_count(len(in_group_test))
        for row, name in zip(rows.all(), sorted(in_group_test, reverse=True), strict=True):
            expect(row).to_have_attribute("data-key", name)
        console.shot("27-registries-filtered")
        console.assert_clean()
    finally:
        context.close()


def test_platform_images_and_users_for_admins(
    context: BrowserContext, server: RunningServer
) -> None:
    platform = unique("base")
    with api_as(server, server.admin) as http:
        created = http.post("/api/v1/registries", json={"name": platform, "kind": "platform"})
        assert created.status_code == 201, created.text
        push_image_http(http, f"{platform}/alpine", build_index(platform), "3.20")
        push_image_http(http, f"{platform}/busybox", build_image(f"{platform}-bb"), "1.36")
    console = Console(context, server).sign_in(*server.admin)
    page = console.page

    page.click("[data-nav=platform]")
    console.search(platform)
    row = console.row("image-table", f"{platform}/alpine")
    expect(row).to_contain_text("3.20")
    expect(row.locator(".command code")).to_have_text(
        f"docker pull {server.address}/{platform}/alpine:3.20"
    )
    expect(page.locator("[data-testid=page-images] input[type=checkbox]")).to_have_count(0)
    console.shot("23-platform-images")
    row.locator("[data-op=tags]").click()
    tag = console.row("tag-table", "3.20")
    expect(tag).to_contain_text("linux/amd64, linux/arm64")
    expect(page.locator("[data-op=delete]")).to_have_count(0)
    console.shot("24-platform-tags")

    # Users: the API's error for a short password shows in Chinese under the password field.
    page.click("[data-nav=users]")
    console.search("admin")
    expect(console.row("user-table", "admin")).to_contain_text("管理员")
    page.click("[data-testid=create-user]")
    newcomer = unique("ops")
    page.fill("[data-testid=new-username]", newcomer)
    page.fill("[data-testid=new-password]", "short")
    page.click("[data-testid=user-dialog] [data-role=confirm]")
    password_field = page.locator("[data-testid=user-dialog] .field").nth(1)
    expect(password_field.locator(".field-error")).to_have_text("密码至少 8 个字符")
    page.fill("[data-testid=new-password]", "a-long-enough-password")
    page.click("[data-testid=user-dialog] [data-role=confirm]")
    console.search(newcomer)
    expect(console.table("user-table").locator("tr")).to_have_count(1)
    expect(console.row("user-table", newcomer)).to_contain_text("正常")
    console.row("user-table", newcomer).locator("[data-op=toggle]").click()
    expect(console.row("user-table", newcomer)).to_contain_text("已禁用")
    console.shot("25-users")
    console.assert_clean()


def test_personal_access_token_is_shown_once_and_revoked(
    context: BrowserContext, server: RunningServer, user: tuple[str, str]
) -> None:
    username, password = user
    console = Console(context, server).sign_in(username, password)
    page = console.page
    page.click("[data-nav=tokens]")
    name = unique("ci")
    page.click("[data-testid=create-token]")
    page.fill("[data-testid=token-name]", name)
    page.click("[data-testid=token-dialog] [data-role=confirm]")
    secret_dialog = console.dialog("token-secret-dialog")
    expect(secret_dialog).to_contain_text("只显示这一次")
    secret = secret_dialog.locator("[data-testid=token-secret]").inner_text()
    console.shot("26-token-created")
    with httpx.Client(base_url=server.url, auth=(username, secret)) as http:
        assert http.get("/api/v1/users/me").status_code == 200
    secret_dialog.locator("[data-role=cancel]").click()
    # Shown once: nowhere on the page after the dialog closes, nor after a reload.
    assert secret not in page.content()
    token_row = console.table("token-table").locator("tr", has_text=name)
    expect(token_row).to_contain_text("有效")
    token_row.locator("[data-op=revoke]").click()
    expect(console.dialog("revoke-dialog")).to_contain_text(name)
    console.dialog("revoke-dialog").locator("[data-role=confirm]").click()
    expect(token_row).to_contain_text("已撤销")
    console.shot("27-tokens")
    with httpx.Client(base_url=server.url, auth=(username, secret)) as http:
        assert http.get("/api/v1/users/me").status_code == 401
    console.assert_clean()


def test_language_follows_the_browser_and_the_catalogue_is_complete(
    browser: Browser, server: RunningServer
) -> None:
    for locale, title in (
        ("en-US", "Sign in to Container Registry"),
        ("zh-CN", "登录容器镜像仓库"),
    ):
        ctx = browser.new_context(locale=locale, viewport=VIEWPORT)
        try:
            console = Console(ctx, server).open("signin")
            expect(console.page.locator("[data-testid=page-signin] h1")).to_have_text(title)
            if locale == "en-US":
                console.shot("28-signin-english")
                catalogue = console.page.evaluate(
                    """() => import('/console/static/i18n.js').then(m => Object.fromEntries(
                        Object.entries(m.CATALOGUE).map(([k, v]) => [k, Object.keys(v)])))"""
                )
        finally:
            ctx.close()
    # Every entry has both languages; every key the screens use is in the catalogue.
    incomplete = [key for key, langs in catalogue.items() if sorted(langs) != ["en", "zh-CN"]]
    assert not incomplete, f"catalogue entries without both languages: {incomplete}"
    sources = [STATIC / "app.js", *sorted((STATIC / "views").glob("*.js"))]
    used = {
        key
        for source in sources
        for key in re.findall(r'"([a-z]+(?:\.[a-zA-Z0-9_]+)+)"', source.read_text())
    }
    missing = sorted(used - set(catalogue))
    assert not missing, f"keys used but not in the catalogue: {missing}"


# --- safety ------------------------------------------------------------------------------------


def test_remark_with_a_script_shows_as_text(
    context: BrowserContext, server: RunningServer, user: tuple[str, str]
) -> None:
    payload = "<script>alert(1)</script>"
    label = '<img src=x onerror="alert(2)">'
    name = unique("xss")
    console = Console(context, server).sign_in(*user)
    page = console.page
    page.click("[data-testid=create-registry]")
    page.fill("[data-testid=name]", name)
    page.fill("[data-testid=remark]", payload)
    page.click("[data-testid=label-add]")
    page.locator(".label-row .label-key").fill("note")
    page.locator(".label-row .label-value").fill(label)
    page.click("[data-testid=create-dialog] [data-role=confirm]")
    row = console.row("registry-table", name)
    expect(row.locator(".remark")).to_have_text(payload)
    expect(row.locator(".chip")).to_have_text(f"note: {label}")
    assert row.locator("script, img").count() == 0
    console.shot("29-xss-remark-as-text")
    # The modify dialog shows it as the textarea's text too.
    row.locator("[data-op=modify]").click()
    expect(page.locator("[data-testid=modify-dialog] textarea")).to_have_value(payload)
    page.locator("[data-testid=modify-dialog] [data-role=cancel]").click()
    page.wait_for_timeout(500)
    assert page.locator("#app script, #dialogs script").count() == 0
    console.assert_clean()


def test_cookie_post_without_csrf_token_is_refused(
    context: BrowserContext, server: RunningServer, user: tuple[str, str]
) -> None:
    console = Console(context, server).sign_in(*user)
    name = unique("csrf")
    post = """([name, token]) => fetch('/api/v1/registries', {
        method: 'POST', credentials: 'same-origin',
        headers: Object.assign({'Content-Type': 'application/json'},
                               token ? {'X-CSRF-Token': token} : {}),
        body: JSON.stringify({name}),
      }).then(async r => ({status: r.status, body: await r.json()}))"""
    refused = console.page.evaluate(post, [name, None])
    assert refused["status"] == 403, refused
    assert refused["body"]["error"]["code"] == "PERMISSION_DENIED"
    wrong = console.page.evaluate(post, [name, "not-the-token"])
    assert wrong["status"] == 403, wrong
    with api_as(server, server.admin) as http:
        assert http.get(f"/api/v1/registries/{name}").status_code == 404
    # The same request with the session's token (as the console sends it) is accepted.
    token = console.page.evaluate(
        "fetch('/console/session').then(r => r.json()).then(s => s.csrf_token)"
    )
    accepted = console.page.evaluate(post, [name, token])
    assert accepted["status"] == 201, accepted
    # DELETE without the header is refused as well.
    deleted = console.page.evaluate(
        "n => fetch('/api/v1/registries/' + n, {method: 'DELETE'}).then(r => r.status)", name
    )
    assert deleted == 403
    with api_as(server, server.admin) as http:
        assert http.get(f"/api/v1/registries/{name}").status_code == 200


class _AttackerSite:
    """A page on another origin (http://localhost:PORT, while the registry is 127.0.0.1)."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _AttackerSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_cross_site_form_post_changes_nothing(
    context: BrowserContext, server: RunningServer, user: tuple[str, str]
) -> None:
    console = Console(context, server).sign_in(*user)
    victim = unique("victim")
    with api_as(server, user) as http:
        assert http.post("/api/v1/registries", json={"name": victim}).status_code == 201
    evil_form, evil_fetch = unique("evil-form"), unique("evil-fetch")
    target = f"{server.url}/api/v1/registries"
    # A text/plain form body that is valid JSON, a no-cors fetch, and a cross-site PATCH: with
    # the session cookie and no CSRF check, the first two would create registries.
    field_name = json.dumps({"name": evil_form, "remark": ""})[:-2]
    html = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{field_name}' value='"}}'>
</form>
<script>
window.inlineRan = true;
Promise.allSettled([
  fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
    headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{name: "{evil_fetch}"}})}}),
  fetch("{target}/{victim}", {{method: "PATCH", credentials: "include",
    headers: {{"Content-Type": "application/json"}}, body: '{{"public": true}}'}}),
]).finally(() => document.getElementById("f").submit());
</script></body></html>"""
    with _AttackerSite(html) as attacker:
        page = console.page
        page.goto(attacker.url)
        page.wait_for_url(target, timeout=WAIT_MS)
        answer = page.locator("body").inner_text()
    # The form post arrived without the session (SameSite=Strict): 401, not the CSRF 403.
    assert "UNAUTHENTICATED" in answer, answer
    with api_as(server, server.admin) as http:
        for name in (evil_form, evil_fetch):
            assert http.get(f"/api/v1/registries/{name}").status_code == 404, name
        assert http.get(f"/api/v1/registries/{victim}").json()["public"] is False


def test_csp_forbids_inline_scripts(context: BrowserContext, server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/console/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["script-src"] == ["'self'"], policy
    assert directives["style-src"] == ["'self'"], policy
    assert "unsafe" not in policy
    # The page itself needs nothing inline: every script is a file, no inline style or handler.
    html = response.text
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/console/static/app.js">'
    ]
    assert all(
        not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    )
    assert not re.search(r"\sstyle=|\son[a-z]+=", html, re.IGNORECASE)
    risky = re.compile(
        r"\.(?:innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    for source in [*STATIC.glob("*.js"), *STATIC.glob("views/*.js")]:
        found = risky.search(source.read_text())
        assert found is None, f"{source.name} uses {found and found.group(0)}"

    # In the browser: an injected inline script and an inline handler do not run on the
    # console's origin, and the browser reports the violation...
    console = Console(context, server).open("shared")
    outcome = console.page.evaluate(
        """() => new Promise(resolve => {
        const violations = [];
        document.addEventListener(
          'securitypolicyviolation', e => violations.push(e.violatedDirective));
        const script = document.createElement('script');
        script.textContent = 'window.__inlineRan = true';
        document.body.append(script);
        const img = document.createElement('img');
        img.setAttribute('onerror', 'window.__handlerRan = true');
        img.src = 'data:,broken';
        document.body.append(img);
        setTimeout(() => resolve({
          inline: window.__inlineRan === true, handler: window.__handlerRan === true, violations,
        }), 500);
      })"""
    )
    assert outcome["inline"] is False and outcome["handler"] is False, outcome
    assert any(v.startswith("script-src") for v in outcome["violations"]), outcome
    # ...while the same injection runs on a page without the policy (the check is real).
    control = context.new_page()
    control.set_content("<p>no policy</p>")
    ran = control.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__inlineRan = true'; document.body.append(s);
                   return window.__inlineRan === true; }"""
    )
    assert ran is True
    console.assert_clean()


# --- layout: widths and long text (issue 10, points 18-21) -----------------------------------

LAYOUT_VIEWPORTS = [(1440, 900), (1280, 800), (1024, 768)]
LONG_REMARK = ("A remark long enough to push any table wider than the window, " * 6)[:300]
NESTED_IMAGE = "tools/build/linters/golang"
LONG_IMAGE = "a-rather-long-image-name/with-a-longer-path-component-than-most/and-then-some-more"

# Whether the page scrolls sideways, and where the right edge of every table's last column
# lies compared with the window (an operations column out of view is a scroll away).
LAYOUT_PROBE = """() => {
  const root = document.scrollingElement;
  const tables = [...document.querySelectorAll('.table-scroll')].map((box) => ({
    testid: box.parentElement.dataset.testid,
    overflow: box.scrollWidth - box.clientWidth,
    opsRight: (() => {
      const ops = box.querySelector('th.col-ops');
      return ops ? ops.getBoundingClientRect().right : null;
    })(),
  }));
  return { page: root.scrollWidth - root.clientWidth, width: window.innerWidth, tables };
}"""


def _measure_lines(locator: Any) -> int:
    return locator.evaluate(
        """(el) => {
            const range = document.createRange();
            range.selectNodeContents(el);
            const rects = [...range.getClientRects()].filter((r) => r.width > 0);
            return new Set(rects.map((r) => Math.round(r.bottom))).size;
        }"""
    )


def _lines(locator: Any, settle_rounds: int = 10) -> int:
    """How many lines an inline element's text takes (a wrapped one has a box per line). The
    console redraws its lists every few seconds (pull counts): a row measured mid-redraw shows
    no box at all, so the measure is taken again until the row is drawn."""
    lines = _measure_lines(locator)
    for _ in range(settle_rounds):
        if lines > 0:
            break
        locator.page.wait_for_timeout(200)
        lines = _measure_lines(locator)
    return lines


def _assert_within_width(console: Console, locator: Any) -> None:
    """The element lies within the window's width: in view without scrolling sideways."""
    expect(locator).to_be_visible()
    left, right, width = locator.evaluate(
        "(el) => { const r = el.getBoundingClientRect(); return [r.left, r.right, innerWidth]; }"
    )
    assert left >= 0 and right <= width, f"{locator} spans {left}-{right} px of {width} px"


def _assert_fits(console: Console, where: str) -> None:
    probe = console.page.evaluate(LAYOUT_PROBE)
    assert probe["page"] <= 0, f"{where}: the page scrolls sideways by {probe['page']} px"
    for table in probe["tables"]:
        assert table["overflow"] <= 0, (
            f"{where}: table {table['testid']} scrolls sideways by {table['overflow']} px"
        )
        if table["opsRight"] is not None:
            assert table["opsRight"] <= probe["width"], (
                f"{where}: the operations column of {table['testid']} ends at "
                f"{table['opsRight']} px, beyond the window's {probe['width']} px"
            )


@pytest.fixture(scope="module")
def long_texts(server: RunningServer) -> dict[str, str]:
    """A registry in a project group, with a 300-character remark, long labels, a nested and
    a long image name: everything that made the console wider than the window."""
    group = unique("platform-team")
    registry = unique("layout")
    labels = {f"team-{n}-owner-of-this-registry": f"value-{n}-" + "x" * 80 for n in range(4)}
    with api_as(server, server.admin) as http:
        assert http.post("/api/v1/project-groups", json={"name": group}).status_code == 201
        created = http.post(
            "/api/v1/registries",
            json={
                "name": registry,
                "project_group": group,
                "remark": LONG_REMARK,
                "labels": labels,
                "public": True,
            },
        )
        assert created.status_code == 201, created.text
        for image in (NESTED_IMAGE, LONG_IMAGE):
            push_image_http(http, f"{registry}/{image}", build_image(f"{registry}-{image}"), "1.0")
    return {"group": group, "registry": registry}


@pytest.mark.parametrize(("width", "height"), LAYOUT_VIEWPORTS)
def test_no_page_scrolls_sideways_with_long_texts(
    browser: Browser,
    server: RunningServer,
    long_texts: dict[str, str],
    width: int,
    height: int,
) -> None:
    registry = long_texts["registry"]
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": height})
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        size = f"{width}x{height}"

        console.open("registries")
        console.search(registry)
        row = console.row("registry-table", registry)
        expect(row).to_be_visible()
        console.shot(f"layout-{size}-registries")
        remark = row.locator(".remark")
        expect(remark).to_have_attribute("title", LONG_REMARK)
        assert _lines(row.locator(".group-name")) == 1, "the project group's name wraps"
        _assert_within_width(console, row.locator("[data-op=delete]"))
        _assert_fits(console, f"registries at {size}")
        console.shot(f"layout-{size}-registries")

        console.open(f"registries/{registry}/images")
        nested = console.row("image-table", NESTED_IMAGE)
        expect(nested).to_be_visible()
        assert _lines(nested.locator("td.col-name a")) <= 2, "a nested image name wraps"
        long_row = console.row("image-table", LONG_IMAGE)
        expect(long_row.locator("td.col-name a")).to_have_attribute("title", LONG_IMAGE)
        _assert_within_width(console, nested.locator("[data-op=tags]"))
        _assert_fits(console, f"images at {size}")
        console.shot(f"layout-{size}-images")

        console.open(f"registries/{registry}/images/{NESTED_IMAGE.replace('/', '%2F')}/tags")
        expect(console.row("tag-table", "1.0")).to_be_visible()
        _assert_fits(console, f"tags at {size}")
        console.shot(f"layout-{size}-tags")

        for route, testid in (
            ("shared", "shared-table"),
            ("platform", "image-table"),
            ("tokens", "token-table"),
            ("groups", "group-table"),
            ("users", "user-table"),
        ):
            console.open(route)
            expect(page.locator(f'[data-testid="{testid}"] .table-message')).not_to_have_text(
                re.compile("加载")
            )
            if route == "shared":
                console.search(registry)
                expect(console.row(testid, registry)).to_be_visible()
            _assert_fits(console, f"{route} at {size}")
            console.shot(f"layout-{size}-{route}")
        console.assert_clean()
    finally:
        context.close()


def test_a_registry_the_user_may_not_open_shows_its_error_once(
    browser: Browser, server: RunningServer, user: tuple[str, str]
) -> None:
    hidden = unique("private")
    with api_as(server, server.admin) as http:
        assert http.post("/api/v1/registries", json={"name": hidden}).status_code == 201
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*user)
        page = console.page
        console.open(f"registries/{hidden}/images")
        errors = page.locator(".notice-error:visible, .table-error:visible")
        expect(errors).to_have_count(1)
        page.wait_for_timeout(500)  # the list's own answer has come by now, and must not show
        expect(errors).to_have_count(1)
        expect(page.locator(".pager button:visible:enabled")).to_have_count(0)
        console.shot("layout-no-access")
        console.open(f"registries/{hidden}/images/app/tags")
        expect(page.locator("[data-testid=page-tags]")).to_be_visible()
        page.wait_for_timeout(500)
        expect(errors).to_have_count(1)
        expect(page.locator(".pager button:visible:enabled")).to_have_count(0)
        console.shot("layout-no-access-tags")
    finally:
        context.close()


def test_an_empty_registry_opens_the_commands_its_empty_state_points_at(
    context: BrowserContext, server: RunningServer
) -> None:
    empty = unique("empty")
    with api_as(server, server.admin) as http:
        assert http.post("/api/v1/registries", json={"name": empty}).status_code == 201
    console = Console(context, server).sign_in(*server.admin)
    console.open(f"registries/{empty}/images")
    message = console.page.locator('[data-testid="image-table"] .table-message')
    expect(message).to_contain_text("上传和拉取镜像")
    box = console.page.locator("details.help-box")
    expect(box.locator("summary")).to_have_text("上传和拉取镜像")
    expect(box).to_have_attribute("open", "")
    expect(box.locator(".help-line").first).to_be_visible()
    console.shot("layout-empty-registry")


@pytest.fixture(scope="module")
def tuned_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with a two-minute registry pull-count refresh and a low sign-in limit."""
    running = RunningServer(
        tmp_path_factory.mktemp("tuned") / "data",
        env={
            "OCIREGISTRY_REGISTRY_COUNT_REFRESH_SECONDS": "120",
            "OCIREGISTRY_LOGIN_MAX_FAILURES": "3",
        },
    ).start()
    yield running
    running.stop()


def test_intro_token_pages_and_unlock(browser: Browser, tuned_server: RunningServer) -> None:
    """The introduction quotes the configured refresh interval; the token list pages; an
    admin lifts a sign-in block with the users page's button."""
    server = tuned_server
    with api_as(server, server.admin) as http:
        created = http.post("/api/v1/users", json={"username": "locked", "password": "locked-pw-1"})
        assert created.status_code == 201, created.text
        for n in range(23):
            made = http.post("/api/v1/users/me/tokens", json={"name": f"ci-{n:02}"})
            assert made.status_code == 201, made.text
    for attempt in range(3):
        with api_as(server, ("locked", f"wrong-{attempt}")) as http:
            assert http.get("/api/v1/users/me").status_code == 401
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        console.open("registries")
        intro = page.locator("[data-testid=registries-intro]")
        expect(intro).to_contain_text("每2分钟刷新一次")
        expect(intro).not_to_contain_text("15")

        console.open("tokens")
        expect(console.table("token-table").locator("tr")).to_have_count(20)
        expect(page.locator(".pager-total")).to_contain_text("23")
        page.locator(".pager button", has_text="下一页").click()
        expect(console.table("token-table").locator("tr")).to_have_count(3)
        expect(console.table("token-table").locator("tr").first).to_contain_text("ci-02")
        console.shot("tokens-paged")

        console.open("users")
        console.search("locked")
        row = console.row("user-table", "locked")
        expect(row.locator("[data-testid=blocked]")).to_be_visible()
        row.locator("[data-op=unlock]").click()
        expect(row.locator("[data-testid=blocked]")).to_have_count(0)
        console.shot("users-unlocked")
        console.assert_clean()
    finally:
        context.close()
    with api_as(server, ("locked", "locked-pw-1")) as http:
        assert http.get("/api/v1/users/me").status_code == 200


def test_storage_usage_and_the_quota_bar(browser: Browser, server: RunningServer) -> None:
    """Issue 14: a registry's storage (used, unique) and, with a quota, a bar against it, in
    the registry list and on the registry's page; its immutable tag rules; an image's size in
    the image list; in Chinese and in English."""
    registry = unique("usage")
    image = build_image(registry)
    with api_as(server, server.admin) as admin:
        assert admin.post("/api/v1/registries", json={"name": registry}).status_code == 201
        push_image_http(admin, f"{registry}/app", image, "1.0")
        shown = admin.get(f"/api/v1/registries/{registry}").json()
        used = shown["size_bytes"]
        assert used > 0 and shown["unique_bytes"] == used
        quota = used * 2
        patched = admin.patch(
            f"/api/v1/registries/{registry}",
            json={"quota_bytes": quota, "immutable_tags": ["v*", "release-*"]},
        )
        assert patched.status_code == 200, patched.text
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        console.open("registries")
        console.search(registry)
        row = console.row("registry-table", registry)
        usage = row.locator("[data-testid=usage]")
        expect(usage).to_contain_text("配额")
        expect(usage).to_contain_text("独占")
        bar = usage.locator("[data-testid=quota-bar]")
        assert bar.get_attribute("max") == str(quota)
        assert float(bar.evaluate("meter => meter.value")) == used
        expect(page.locator("[data-testid=registry-table] thead")).to_contain_text("存储用量")
        console.shot("usage-registries")

        console.open(f"registries/{registry}/images")
        expect(page.locator(".registry-head [data-testid=quota-bar]")).to_have_count(1)
        expect(page.locator("[data-testid=immutable-tags]")).to_have_text("v*release-*")
        expect(page.locator(".registry-head")).to_contain_text("不可变标签")
        size = console.row("image-table", "app").locator("[data-testid=size]")
        expect(size).not_to_have_text("-")
        console.shot("usage-registry-page")

        page.click("[data-testid=lang-switch]")
        expect(page.locator(".registry-head [data-testid=usage]")).to_contain_text(" of ")
        expect(page.locator(".registry-head [data-testid=usage]")).to_contain_text("unique")
        expect(page.locator(".registry-head")).to_contain_text("Immutable tags")
        text = page.locator(".shell").inner_text()
        assert not CJK.search(text), f"untranslated text in English: {CJK.findall(text)}"
        page.click("[data-testid=lang-switch]")
        console.assert_clean()
    finally:
        context.close()


def test_audit_log_page(browser: Browser, server: RunningServer) -> None:
    """Issue 14: the audit log screen lists changes with actor, outcome and request id, in
    Chinese and English; denied attempts show as such."""
    registry = unique("audited")
    with api_as(server, server.admin) as admin:
        assert admin.post("/api/v1/registries", json={"name": registry}).status_code == 201
        patched = admin.patch(
            f"/api/v1/registries/{registry}",
            json={"public": True},
            headers={"X-Request-Id": f"req-{registry}"},
        )
        assert patched.status_code == 200
    with httpx.Client(base_url=server.url, auth=("admin", "wrong-password")) as wrong:
        assert (
            wrong.patch(f"/api/v1/registries/{registry}", json={"public": False}).status_code == 401
        )
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        console.open("audit")
        expect(page.locator("[data-nav=audit]")).to_have_text("审计日志")
        console.search(registry)
        rows = console.table("audit-table").locator("tr")
        expect(rows).to_have_count(2)  # the change and the refused change (newest first)
        expect(console.table("audit-table")).to_contain_text("registry.update")
        expect(console.table("audit-table")).to_contain_text(f"req-{registry}")
        expect(console.table("audit-table").locator("[data-testid=outcome]").first).to_contain_text(
            "拒绝"
        )
        console.shot("audit-log")
        page.click("[data-testid=lang-switch]")
        expect(page.locator("[data-nav=audit]")).to_have_text("Audit log")
        expect(page.locator("[data-testid=audit-table] thead")).to_contain_text("Outcome")
        expect(console.table("audit-table").locator("[data-testid=outcome]").first).to_be_visible()
        text = page.locator(".shell").inner_text()
        assert not CJK.search(text), f"untranslated text in English: {CJK.findall(text)}"
        page.click("[data-testid=lang-switch]")
        console.assert_clean()
    finally:
        context.close()


def test_users_and_members_page_by_cursor(browser: Browser, server: RunningServer) -> None:
    """Issue 15: the user list and a group's members follow each answer's `next` cursor
    (page numbers reach only the first 1,000 items of a list); back is page 1 again."""
    prefix, group = unique("cu"), unique("cg")
    names = [f"{prefix}-{n:02d}" for n in range(23)]
    with api_as(server, server.admin) as admin:
        assert admin.post("/api/v1/project-groups", json={"name": group}).status_code == 201
        for name in names:
            created = admin.post(
                "/api/v1/users", json={"username": name, "password": "pw-long-enough"}
            )
            assert created.status_code == 201, created.text
            member = admin.put(
                f"/api/v1/project-groups/{group}/members/{name}", json={"role": "guest"}
            )
            assert member.status_code == 200, member.text
    context = browser.new_context(locale="en-US", viewport=VIEWPORT)
    try:
        console = Console(context, server).sign_in(*server.admin)
        page = console.page
        page.click("[data-nav=users]")
        console.search(prefix)
        rows = console.table("user-table").locator("tr")
        pages = page.locator("[data-testid=user-table] .pager-page")
        expect(rows).to_have_count(20)
        expect(rows.first).to_have_attribute("data-key", names[0])
        with page.expect_request(lambda r: "/api/v1/users?" in r.url and "cursor=" in r.url):
            page.click("[data-testid=user-table] .pager button:has-text('Next')")
        expect(rows).to_have_count(3)
        expect(rows.last).to_have_attribute("data-key", names[-1])
        expect(pages).to_contain_text("2")
        page.click("[data-testid=user-table] .pager button:has-text('Prev')")
        expect(rows.first).to_have_attribute("data-key", names[0])

        console.open(f"groups/{group}")
        members = page.locator("[data-testid=member-table] tbody tr")
        expect(members).to_have_count(20)  # admin, then the first 19 by name
        with page.expect_request(lambda r: "/members?" in r.url and "cursor=" in r.url):
            page.click("[data-testid=member-table] .pager button:has-text('Next')")
        expect(members).to_have_count(4)
        expect(members.last).to_have_attribute("data-key", names[-1])
        console.assert_clean()
    finally:
        context.close()
