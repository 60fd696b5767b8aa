"""The Dagster UI in a real browser: it shows every asset and check, and materialises a partition it launches.

Runs the real `dg dev` (webserver and daemon) on sample data and drives Debian's Chromium with Playwright.
Screenshots of each step go to test-artifacts/ui/ once the test is done (a failure adds a Playwright trace).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from batch_assets.definitions import defs
from batch_assets.generator import generate
from batch_assets.storage import Warehouse
from batch_assets_tests.dagster_dev import REPO_ROOT, copy_of_the_repository, graphql, running_plain_dev

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
PARTITION = "2026-11-02"
OTHER_PARTITION = "2026-11-03"
# Waits, not timed assertions: generous because the machine is small and shared.
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000

GRAPH = defs.resolve_asset_graph()
ASSET_KEYS = sorted(GRAPH.get_all_asset_keys(), key=lambda key: key.to_user_string())
CHECKS_BY_ASSET = {
    key: sorted(check.name for check in GRAPH.get(key).check_keys) for key in ASSET_KEYS if GRAPH.get(key).check_keys
}

MATERIALIZATIONS_QUERY = """
query Materializations($partitions: [String!]) {
  assetsOrError {
    ... on AssetConnection {
      nodes { key { path } assetMaterializations(partitions: $partitions) { partition runId } }
    }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } eventConnection { events { __typename } } }
  }
}
"""


def asset_path(key: dg.AssetKey) -> str:
    """The asset's URL path in the UI, e.g. raw/ledger."""
    return "/".join(key.path)


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def publish(shots: Path) -> None:
    """Make `shots` the new test-artifacts/ui/ by renames, so that a run of this test at the same time in the
    same checkout neither mixes its screenshots into these nor deletes them while they are taken."""
    ARTIFACTS.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".ui-new-", dir=ARTIFACTS.parent))
    shutil.copytree(shots, staged, dirs_exist_ok=True)
    for _ in range(5):  # another run may publish between the two renames: then move its folder aside too
        replaced = Path(tempfile.mkdtemp(prefix=".ui-old-", dir=ARTIFACTS.parent))
        try:
            ARTIFACTS.rename(replaced)  # a directory may be renamed over an empty one
        except FileNotFoundError:
            pass
        try:
            staged.rename(ARTIFACTS)
            break
        except OSError:
            continue
        finally:
            shutil.rmtree(replaced, ignore_errors=True)
    shutil.rmtree(staged, ignore_errors=True)


@contextmanager
def browser_page(shots: Path) -> Iterator[Page]:
    """A headless Chromium page; on failure it leaves a screenshot and a Playwright trace for the post-mortem.
    Its screenshots are taken in `shots`, a folder of this test's own, and published when it closes."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium; Playwright downloads nothing)")
    shots.mkdir(parents=True)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        # Playwright keeps trace chunks in traces_dir; inside the screenshots' folder, they go with them.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, traces_dir=str(shots / "traces")
        )
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        try:
            yield page
        except BaseException:
            shot(page, shots, "failure")
            context.tracing.stop(path=str(shots / "failure-trace.zip"))
            raise
        finally:
            browser.close()
            publish(shots)


def see_every_asset_in_the_graph(page: Page, shots: Path, base_url: str) -> None:
    page.goto(f"{base_url}/asset-groups")
    graph = page.locator("svg")
    # The global graph starts with every group collapsed into one box; the graph's settings menu opens them.
    expect(graph.get_by_text(GRAPH.get(ASSET_KEYS[0]).group_name, exact=True).first).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem").filter(has_text="Expand all groups").click()
    page.keyboard.press("Escape")
    expect(page).to_have_url(re.compile(r"[?&]expanded="))
    for group in {GRAPH.get(key).group_name for key in ASSET_KEYS}:
        expect(graph.get_by_text(group, exact=True)).to_have_count(1)
    # A graph node shows the last part of its key (raw/ledger and staging/ledger both read "ledger").
    for name, count in Counter(key.path[-1] for key in ASSET_KEYS).items():
        expect(graph.get_by_text(name, exact=True)).to_have_count(count)
    shot(page, shots, "01-asset-graph")

    # The catalog lists the full keys, so every asset is seen by its own name too.
    page.goto(f"{base_url}/assets")
    for key in ASSET_KEYS:
        link = page.locator(f'a[href="/assets/{asset_path(key)}"]').first
        expect(link).to_be_visible()
        expect(link).to_contain_text(" / ".join(key.path))
    shot(page, shots, "02-asset-catalog")


def see_the_schedule_and_every_sensor(page: Page, shots: Path, base_url: str) -> None:
    """`make dev` shows the automation: the schedule and each sensor, by name, on the Automation page."""
    page.goto(f"{base_url}/automation")
    repository = defs.get_repository_def()
    for name in [s.name for s in repository.schedule_defs] + [s.name for s in repository.sensor_defs]:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    shot(page, shots, "00-automation")


def launch_one_partition(page: Page, shots: Path, base_url: str, partition: str) -> str:
    """Materialize all → pick one partition → launch; returns the run id from the launch toast."""
    page.goto(f"{base_url}/asset-groups")
    page.get_by_role("button", name="Materialize all…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Launch runs to materialize {len(ASSET_KEYS)} assets")).to_be_visible()
    # The dialog offers only the last 90 days at first; the partitions begin in 2025, so this is always there.
    dialog.get_by_text("Show all partitions").click()
    expect(dialog.get_by_text("All time")).to_be_visible()
    partitions = dialog.get_by_role("textbox").first
    partitions.fill(partition)
    partitions.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    shot(page, shots, "03-launch-dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()

    # The toast "Launched run …" links to the run; read at once, as the toast closes by itself.
    href = page.get_by_role("link", name="View", exact=True).get_attribute("href") or ""
    shot(page, shots, "04-launched")
    launched = re.search(r"/runs/([0-9a-f-]{36})$", href)
    assert launched, f"the launch toast links to {href!r}, not to a run"
    return launched.group(1)


def see_the_run_succeed(page: Page, shots: Path, base_url: str, run_id: str) -> None:
    page.goto(f"{base_url}/runs/{run_id}")
    # The header's status tag ends in one of these; waiting for any of them shows a failure at once.
    status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    shot(page, shots, "05-run")
    expect(status).to_have_text("Success")


def see_the_partition_materialised_and_checked(page: Page, shots: Path, base_url: str, run_id: str) -> None:
    """Each asset's page: the launched partition is materialised by the run, and every check has passed.

    The checks are looked at after the run rather than before, so one visit of each page shows both that
    they exist and that the run evaluated them.
    """
    for key in ASSET_KEYS:
        name = asset_path(key).replace("/", "-")
        page.goto(f"{base_url}/assets/{asset_path(key)}?view=partitions&partition={PARTITION}")
        expect(page.get_by_text("Materialized (1)", exact=True)).to_be_visible()
        # The partition's detail panel names the run of its latest materialization.
        expect(page.get_by_role("link", name=run_id[:8], exact=True).first).to_be_visible()
        shot(page, shots, f"06-partition-{name}")

        checks = CHECKS_BY_ASSET.get(key, [])
        if not checks:
            continue
        page.get_by_role("tab", name="Checks").click()
        expect(page.get_by_text(f"Checks ({len(checks)})", exact=True)).to_be_visible()
        for check in checks:
            expect(page.get_by_text(check, exact=True).first).to_be_visible()
        expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(checks))
        shot(page, shots, f"07-checks-{name}")


def see_the_top_breaks_on_the_summary(page: Page, shots: Path, base_url: str) -> None:
    """The summary's latest materialization shows the day's largest and oldest breaks as a markdown table."""
    page.goto(f"{base_url}/assets/recon/summary?view=partitions&partition={PARTITION}")
    label = page.get_by_text("top_breaks", exact=True)
    expect(page.get_by_text("Metadata", exact=True).first).to_be_visible()
    page.mouse.move(900, 600)
    for _ in range(20):  # the metadata table is long: scroll the panel until the entry shows
        if label.count():
            break
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(200)
    label.first.scroll_into_view_if_needed()
    shot(page, shots, "08-top-breaks-entry")
    long_form = page.get_by_text("[Show Markdown]", exact=True)
    if long_form.count():  # the UI shows long markdown in a dialog, short markdown in the table
        long_form.first.click()
    expect(page.get_by_text("Largest breaks").first).to_be_visible()
    expect(page.get_by_text("Oldest breaks").first).to_be_visible()
    # The sample day's young amount mismatches are listed, with their category.
    expect(page.get_by_role("columnheader", name="category").first).to_be_visible()
    expect(page.get_by_role("cell", name="amount_mismatch").first).to_be_visible()
    shot(page, shots, "09-top-breaks")


def materialised_partitions(base_url: str) -> dict[str, set[tuple[str, str]]]:
    """(partition, run id) of every materialization of the sample days, per asset, from the webserver."""
    data = graphql(base_url, MATERIALIZATIONS_QUERY, {"partitions": [PARTITION, OTHER_PARTITION]})
    return {
        "/".join(node["key"]["path"]): {(m["partition"], m["runId"]) for m in node["assetMaterializations"]}
        for node in data["assetsOrError"]["nodes"]
    }


def test_ui_of_plain_dg_dev_in_a_fresh_clone_shows_every_asset_and_check_and_materialises_one_partition(
    tmp_path: Path,
) -> None:
    # `dg dev` as a new user starts it: in a copy of the repository, nothing exported, data under its ./data.
    clone = copy_of_the_repository(tmp_path / "clone")
    home = clone / "data"
    generate(start=date.fromisoformat(PARTITION), days=2, rows=500, fmt="csv", seed=7, landing=home / "landing")

    with running_plain_dev(clone, "dg") as base_url:
        # Dismiss the "join the community" dialog on the server, or it covers the UI on localhost.
        graphql(base_url, "mutation { setNuxSeen }")
        shots = tmp_path / "ui"
        with browser_page(shots) as page:
            see_the_schedule_and_every_sensor(page, shots, base_url)
            see_every_asset_in_the_graph(page, shots, base_url)
            run_id = launch_one_partition(page, shots, base_url, PARTITION)
            see_the_run_succeed(page, shots, base_url, run_id)
            see_the_partition_materialised_and_checked(page, shots, base_url, run_id)
            see_the_top_breaks_on_the_summary(page, shots, base_url)

        run = graphql(base_url, RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["status"] == "SUCCESS"
        assert {"key": "dagster/partition", "value": PARTITION} in run["tags"]
        # The run went through the queue, which only the daemon's run coordinator drains, so it was the
        # daemon that started it.
        assert "RunEnqueuedEvent" in {event["__typename"] for event in run["eventConnection"]["events"]}
        # Every asset has exactly this run's materialization of the launched day, and none of the other day.
        assert materialised_partitions(base_url) == {asset_path(key): {(PARTITION, run_id)} for key in ASSET_KEYS}
    # The run wrote the clone's default warehouse.
    summary = Warehouse(home / "warehouse.duckdb").query(
        "SELECT count(*) FROM recon.summary WHERE business_date = ?", [date.fromisoformat(PARTITION)]
    )
    assert summary.item() > 0
