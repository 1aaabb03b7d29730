"""The operator's path through the Temporal Web UI, in a real browser (Playwright driving Debian's
Chromium): start ``OnboardOrganization`` and ``ClusterLifecycle`` from the UI's start-workflow
form with plain JSON, then send ``delete`` to the cluster from the UI's signal dialog. Screenshots
go to ``test-artifacts/ui/``.

Skipped, saying why, only on a developer machine where no Chromium can be installed (``make test``
installs Debian's package when it can); when ``CI`` is set a missing Chromium or Playwright fails
the test instead. Set ``BRIDGEHEAD_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bridgehead import models as m
from tests.integration.helpers import launch_role_template, wait_for
from tests.support.requirements import missing, require_module

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
ACCOUNT = "240000000001"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = (
        os.environ.get("BRIDGEHEAD_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        missing(
            "no Chromium on this machine (make browser installs Debian's 'chromium' package as root)"
        )
    require_module(
        "playwright.async_api", "playwright is in the dev extra: pip install -e '.[dev]'"
    )
    return path


async def start_from_form(
    page, ui: str, workflow_id: str, workflow_type: str, payload: dict, shot: str
) -> None:
    """Fill the UI's start-workflow form like an operator and press Start Workflow."""
    await page.goto(f"{ui}/namespaces/default/workflows/start-workflow")
    await page.fill("#workflowId", workflow_id)
    await page.fill("#taskQueue", "bridgehead")
    await page.fill("#workflowType", workflow_type)
    await page.locator(".cm-content").first.click()
    await page.keyboard.insert_text(json.dumps(payload))
    await page.get_by_role(
        "heading", name="Start Workflow"
    ).click()  # leave the editor (it reformats the JSON)
    await page.get_by_text("Task Queue is Active").wait_for()
    await page.screenshot(path=ARTIFACTS / f"{shot}-form.png", full_page=True)
    button = page.get_by_test_id("start-workflow-button")
    async with page.expect_response(
        lambda r: r.request.method == "POST" and f"/workflows/{workflow_id}" in r.url
    ) as resp:
        await button.click()
    assert (await resp.value).ok, await (await resp.value).text()
    await page.get_by_text("Workflow started").first.wait_for(timeout=10_000)
    await page.screenshot(path=ARTIFACTS / f"{shot}-started.png", full_page=True)


async def test_start_from_the_ui_form_and_signal_delete_from_the_ui(client, stack):
    executable = chromium()
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("zz-failure*"):
        stale.unlink()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            # 1. Onboard an organisation from the start-workflow form, with the same JSON as the CLI.
            org = {
                "org_id": "uiorg",
                "display_name": "UI Org",
                "admin_email": "admin@uiorg.example",
                "aws_account_id": ACCOUNT,
                "regions": ["us-east-1"],
            }
            await start_from_form(
                page, stack.ui_url, "org-uiorg", "OnboardOrganization", org, "01-onboard"
            )
            h = client.get_workflow_handle("org-uiorg")
            s = await wait_for(
                h, "status", m.OrgStatus, lambda s: s.state == m.OrgState.AWAITING_ROLE, 60
            )
            await page.goto(f"{stack.ui_url}/namespaces/default/workflows/org-uiorg")
            await page.get_by_text(
                "register organisation and issue External ID"
            ).first.wait_for()  # activity summaries on the timeline
            await page.screenshot(path=ARTIFACTS / "02-onboard-workflow.png", full_page=True)

            # The customer launches the role template; the org becomes READY.
            arn = launch_role_template(stack, ACCOUNT, s, "bridgehead-access-uiorg")
            await h.execute_update(
                "submit_role", m.SubmitRoleInput(role_arn=arn), result_type=m.UpdateResult
            )
            s = await wait_for(
                h,
                "status",
                m.OrgStatus,
                lambda s: s.state in (m.OrgState.READY, m.OrgState.ACTION_REQUIRED),
                300,
            )
            assert s.state == m.OrgState.READY, s

            # 2. A cluster, also from the form.
            cluster = {
                "org_id": "uiorg",
                "name": "ui1",
                "region": "us-east-1",
                "config": {
                    "head_instance_type": "t3.medium",
                    "compute_instance_type": "c5.large",
                    "compute_initial_nodes": 1,
                    "compute_max_nodes": 2,
                },
            }
            await start_from_form(
                page, stack.ui_url, "cluster-uiorg-ui1", "ClusterLifecycle", cluster, "03-cluster"
            )
            c = client.get_workflow_handle("cluster-uiorg-ui1", result_type=m.ClusterResult)
            cs = await wait_for(
                c,
                "status",
                m.ClusterStatus,
                lambda s: s.state in (m.ClusterState.RUNNING, m.ClusterState.FAILED),
                180,
            )
            assert cs.state == m.ClusterState.RUNNING, cs

            # 3. Send `delete` from the workflow page: More Actions -> Send a Signal -> delete -> Submit.
            await page.goto(f"{stack.ui_url}/namespaces/default/workflows/cluster-uiorg-ui1")
            await page.get_by_text("RUNNING").first.wait_for()
            await page.get_by_role("button", name="More Actions").click()
            await page.locator("li:visible", has_text="Send a Signal").first.click()
            await page.locator("button:visible:has(#signal-select)").first.click()
            await page.locator(
                "#signal-select-select [role=option]:visible", has_text="delete"
            ).first.click()
            await page.screenshot(path=ARTIFACTS / "04-signal-delete.png", full_page=True)
            async with page.expect_response(
                lambda r: r.request.method == "POST" and "/signal/delete" in r.url
            ) as resp:
                await (
                    page.locator("[data-testid=signal-confirmation-modal]:visible")
                    .get_by_role("button", name="Submit")
                    .click()
                )
            assert (await resp.value).ok, await (await resp.value).text()
            result = await c.result()
            assert result.state == m.ClusterState.DELETED
            await page.reload()
            await page.get_by_text("COMPLETED").first.wait_for(timeout=30_000)
            await page.screenshot(path=ARTIFACTS / "05-cluster-deleted.png", full_page=True)
        except BaseException:
            await page.screenshot(path=ARTIFACTS / "zz-failure.png", full_page=True)
            (ARTIFACTS / "zz-failure.html").write_text(await page.content())
            raise
        finally:
            await browser.close()

    # Exactly one delete signal reached the workflow (the UI's), and the screenshots exist.
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in (await c.fetch_history()).events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert [x.signal_name for x in signals] == ["delete"]
    for shot in (
        "01-onboard-form",
        "01-onboard-started",
        "02-onboard-workflow",
        "03-cluster-started",
        "04-signal-delete",
        "05-cluster-deleted",
    ):
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 10_000, shot
