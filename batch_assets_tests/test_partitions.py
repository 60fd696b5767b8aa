"""Which business days a run covers, read from the tags Dagster gives a daily run and a backfilled range."""

from __future__ import annotations

import pytest

from batch_assets.partitions import days_label, tagged_days

pytestmark = pytest.mark.unit

RANGE = {"dagster/asset_partition_range_start": "2026-11-02", "dagster/asset_partition_range_end": "2026-11-04"}


def test_a_daily_run_covers_its_one_day() -> None:
    assert tagged_days({"dagster/partition": "2026-11-03"}) == ("2026-11-03", "2026-11-03")
    assert days_label({"dagster/partition": "2026-11-03"}) == "2026-11-03"


def test_a_backfilled_range_covers_its_first_to_last_day() -> None:
    assert tagged_days(RANGE) == ("2026-11-02", "2026-11-04")
    assert days_label(RANGE) == "2026-11-02...2026-11-04"


def test_a_range_of_one_day_is_named_as_that_day() -> None:
    one = {**RANGE, "dagster/asset_partition_range_end": "2026-11-02"}
    assert days_label(one) == "2026-11-02"


def test_a_run_of_no_partition_covers_no_day() -> None:
    assert tagged_days({"dagster/asset_partition_range_start": "2026-11-02"}) is None
    assert days_label({}) is None
