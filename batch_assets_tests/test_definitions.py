"""The code location loads, and its asset graph matches the reviewed snapshot (keys, deps, partitions, checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_assets import settings
from batch_assets.definitions import defs
from batch_assets.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def asset_graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": str(node.partitions_def) if node.partitions_def else None,
            "deps": sorted(
                f"{parent.to_user_string()}"
                + (f" ({type(node.partition_mappings[parent]).__name__})" if parent in node.partition_mappings else "")
                for parent in node.parent_keys
            ),
            "pool": node.pools and sorted(node.pools),
            "checks": sorted(check.name for check in node.check_keys),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {"blocking": spec.blocking}
    jobs = sorted(job.name for job in defs.jobs or [])
    repository = defs.get_repository_def()
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "default": s.default_status.value}
        for s in repository.schedule_defs
    }
    sensors = {s.name: {"default": s.default_status.value} for s in repository.sensor_defs}
    return {"assets": assets, "checks": checks, "jobs": jobs, "schedules": schedules, "sensors": sensors}


@pytest.mark.unit
def test_definitions_load_with_every_resource() -> None:
    repository = defs.get_repository_def()
    assert {
        "warehouse",
        "landing",
        "thresholds",
        "matching",
        "calendar",
        "progress",
        "alerts",
        "landing_sensor",
    } <= set(repository.get_top_level_resources())
    assert defs.resolve_job_def("daily_reconciliation") is not None


@pytest.mark.unit
def test_asset_graph_matches_the_snapshot() -> None:
    current = asset_graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the asset graph changed; review the difference and, if intended, refresh the snapshot with "
        "`UPDATE_SNAPSHOTS=1 make test PYTEST_ARGS=batch_assets_tests/test_definitions.py`"
    )


@pytest.mark.unit
def test_every_asset_is_daily_partitioned_and_in_the_warehouse_pool() -> None:
    snapshot = asset_graph_snapshot()
    assert all(a["partitions"] and "Daily" in a["partitions"] for a in snapshot["assets"].values())
    assert all(a["pool"] == ["warehouse"] for a in snapshot["assets"].values())


@pytest.mark.unit
def test_the_invariant_checks_block_and_the_thresholds_do_not() -> None:
    checks = asset_graph_snapshot()["checks"]
    blocking = {name for name, c in checks.items() if c["blocking"]}
    assert blocking == {
        "staging/bank:rows_conserved",
        "staging/bank:txn_id_unique",
        "staging/ledger:rows_conserved",
        "staging/ledger:txn_id_unique",
        "staging/quarantine:quarantine_rate",
        "recon/matches:matched_once",
        "recon/matches:matches_balance",
        "recon/open_items:items_conserved",
    }
    assert {
        "recon/summary:match_rate",
        "recon/summary:break_value",
        "recon/summary:amount_mismatches",
    } <= checks.keys() - blocking


def setting_resources() -> dict[str, Settings]:
    return {key: resource for key, resource in defs.resources.items() if isinstance(resource, Settings)}


@pytest.mark.unit
def test_every_setting_has_one_variable_and_a_default_its_own_check_accepts() -> None:
    variables = [v for resource in setting_resources().values() for v in resource.variables().values()]
    assert len(variables) == len(set(variables)) and all(v.startswith("BATCH_ASSETS_") for v in variables)
    for key, resource in setting_resources().items():
        defaults = {name: type(resource).model_fields[name].default for name in resource.variables()}
        assert type(resource)(**defaults).model_dump() == resource.model_dump(), key  # validated like any value


def test_importing_the_code_location_reads_no_environment() -> None:
    # A variable no field accepts would fail any run at once; importing must not even look at it.
    environ = {"PATH": os.environ["PATH"], settings.CARRY_DAYS: "not a number", settings.HOME: "/nonexistent"}
    code = "from batch_assets.definitions import defs; print(defs.resources['matching'].carry_days)"
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "5"


@pytest.mark.unit
def test_a_variable_replaces_its_default_when_resources_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(settings.CARRY_DAYS, "7")
    monkeypatch.setenv(settings.ALERT_ON_WARN, "true")
    monkeypatch.setenv(settings.HOME, str(tmp_path))
    monkeypatch.setenv(settings.WAREHOUSE, "elsewhere/w.duckdb")
    with dg.build_resources(setting_resources()) as started:
        assert started.matching.carry_days == 7 and started.alerts.alert_on_warn is True
        assert started.warehouse.path == tmp_path / "elsewhere" / "w.duckdb"  # relative: under the data folder
        assert started.thresholds.match_rate_warn == "0.85"  # unset: the default
    assert defs.resources["matching"].carry_days == 5  # the definitions keep the default


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        (settings.CARRY_DAYS, "-1", "greater than or equal to 0"),
        (settings.CARRY_DAYS, "five", "valid integer"),
        (settings.MATCH_RATE_WARN, "high", "is not a decimal number"),
        (settings.QUARANTINE_RATE_WARN, "0.5", "WARN must come before ERROR"),
        (settings.TIMEZONE, "Mars/Olympus", "is not an IANA time zone"),
        (settings.SLA_DEADLINE, "9 o'clock", "is not a local time"),
        (settings.DUCKDB_MEMORY_LIMIT, "lots", "should match pattern"),
        (settings.ALERT_WEBHOOK_URL, "ftp://example.invalid/x", "should match pattern"),
        (settings.ALERT_ON_WARN, "perhaps", "valid boolean"),
    ],
)
@pytest.mark.unit
def test_a_value_its_field_refuses_fails_at_start_naming_the_variable_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(Exception) as raised:
        with dg.build_resources(setting_resources()):
            pass
    message = "".join(str(e) for e in (raised.value, raised.value.__cause__) if e)
    assert says in message and "Fix or unset the variable" in message
    if variable == settings.ALERT_WEBHOOK_URL:  # a credential: named, never echoed
        assert f"{variable}=<hidden>" in message and value not in message
    else:
        assert f"{variable}={value!r}" in message


@pytest.mark.unit
def test_the_readme_settings_table_is_the_one_the_code_prints() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- settings table: generated by `batch-assets env --markdown` -->\n")
    table = readme[start:].split("\n", 1)[1].split("<!-- end of settings table -->")[0]
    assert table == settings.settings_table(defs.resources)


@pytest.mark.unit
def test_the_repository_dagster_yaml_is_the_shipped_one_plus_storage_under_data() -> None:
    root = Path(__file__).resolve().parents[1]
    shipped = yaml.safe_load((root / "batch_assets" / "dagster.yaml").read_text())
    plain = yaml.safe_load((root / "dagster.yaml").read_text())
    storage = {k: plain.pop(k) for k in ("storage", "local_artifact_storage", "compute_logs")}
    assert plain == shipped
    assert storage["storage"] == {"sqlite": {"base_dir": "data/dagster_home"}}


@pytest.mark.unit
def test_the_shipped_instance_serialises_writers_retries_crashes_only_and_bounds_runtime(tmp_path: Path) -> None:
    settings.write_instance_config(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1  # one DuckDB writer at a time
        queue = config.run_queue_config
        assert queue.max_concurrent_runs >= 2  # several runs in flight ...
        assert {"key": "batch_assets/serial", "limit": 1} in queue.tag_concurrency_limits  # ... days in order
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
        # Step retries handle step failures; run retries only crashed workers, so the two never multiply.
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled and 0 < instance.run_monitoring_max_runtime_seconds <= 4 * 3600
        assert instance.run_monitoring_settings.get("free_slots_after_run_end_seconds", 0) > 0
        assert instance.run_coordinator.dequeue_interval_seconds == 1


@pytest.mark.unit
def test_every_run_of_the_daily_job_is_serialised_with_the_other_reconciling_runs() -> None:
    # A job tag, so that the UI's launches and `dagster job backfill` carry it without being told.
    from batch_assets.defs.automation.jobs import SERIAL_TAG, SERIAL_VALUE

    assert defs.resolve_job_def("daily_reconciliation").tags[SERIAL_TAG] == SERIAL_VALUE


@pytest.mark.unit
def test_the_writing_steps_retry_transient_errors_with_backoff_and_jitter() -> None:
    from batch_assets.retries import TRANSIENT_RETRY

    assert TRANSIENT_RETRY.backoff == dg.Backoff.EXPONENTIAL and TRANSIENT_RETRY.jitter == dg.Jitter.PLUS_MINUS
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        # A stage of bucket steps is a graph: its plan, its buckets and its commit each retry.
        for op in graph.get(key).assets_def.node_def.iterate_op_defs():
            assert op.retry_policy == TRANSIENT_RETRY, (key, op.name)


@pytest.mark.unit
def test_no_sensor_or_schedule_opens_the_warehouse() -> None:
    # They run in the code server, and any open of the DuckDB file, even read-only, contends for its lock
    # with the runs that write it.
    repository = defs.get_repository_def()
    for automation in [*repository.sensor_defs, *repository.schedule_defs]:
        assert "warehouse" not in automation.required_resource_keys, automation.name


def test_dg_list_defs_shows_every_definition_found_under_the_defs_folder(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "dagster_home").mkdir()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "list", "defs", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        # An instance of its own, so that listing never creates ./data in the checkout.
        env={**os.environ, "VIRTUAL_ENV": sys.prefix, "DAGSTER_HOME": str(tmp_path / "dagster_home")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listed = json.loads(done.stdout)
    repository = defs.get_repository_def()
    assert {a["asset_key"] for a in listed["assets"]} == {
        k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()
    }
    assert {c["key"] for c in listed["asset_checks"]} == {
        f"{k.asset_key.to_user_string()}:{k.name}" for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert {j["name"] for j in listed["jobs"]} == {"daily_reconciliation"}
    assert {s["name"] for s in listed["schedules"]} == {s.name for s in repository.schedule_defs}
    assert {s["name"] for s in listed["sensors"]} == {s.name for s in repository.sensor_defs} and len(
        listed["sensors"]
    ) == 5
    assert {r["name"] for r in listed["resources"]} == set(defs.resources)
