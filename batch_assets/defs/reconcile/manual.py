"""The match stage's manual pass: the resolutions of the run's days looked up and routed by the plan, then
judged and applied in their account's bucket, day by day, before the automatic passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl

from batch_assets.bucket_steps import BucketWork, Planning
from batch_assets.shared_store import PublishedFile
from batch_assets.storage import Bucket, quote_ident
from batch_assets.transforms.matching import ITEM_SCHEMA
from batch_assets.transforms.resolutions import (
    ACTION_MATCH,
    ACTION_REVERSE,
    ACTION_WRITE_OFF,
    HELD_ITEM_SCHEMA,
    RAW_RESOLUTION_SCHEMA,
    RESOLUTION_LOG_SCHEMA,
    RESOLVED_ITEM_SCHEMA,
    STATE_MATCHED,
    STATE_OPEN,
    STATE_RESOLVED,
    STATUS_APPLIED,
    STATUS_REVERSED,
    VERDICT_SCHEMA,
    judge_resolutions,
    manual_matches,
    resolved_items,
)

RAW_RESOLUTIONS = "raw.resolutions"
RESOLUTION_LOG = "ops.resolution_log"
RESOLVED_ITEMS = "recon.resolved_items"
_ITEM_ACTIONS = [ACTION_MATCH, ACTION_WRITE_OFF]
_STANDING = "standing"
# Each named item as the warehouse knows it before the run: its fields (the latest staged row up to the run's
# last day) and where it stood on the run's first day.
NAMED_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    **ITEM_SCHEMA,
    "state_before": pl.String(),
    "resolved_by_id": pl.String(),
    "bucket": pl.Int64(),
}
_STAGED = " UNION ALL ".join(
    f"SELECT '{source}' AS source, txn_id, account_id, currency, booking_date, amount, reference_norm, "  # noqa: S608 (fixed names)
    f"business_date AS origin_date FROM staging.{source} WHERE business_date <= $last "
    f"AND txn_id IN (SELECT txn_id FROM named WHERE source = '{source}')"
    for source in ("ledger", "bank")
)
_MATCHED = " UNION ".join(
    f"SELECT DISTINCT '{source}' AS source, {source}_txn_id AS txn_id FROM recon.matches "  # noqa: S608 (fixed names)
    f"WHERE business_date < $first AND {source}_txn_id IN (SELECT txn_id FROM named WHERE source = '{source}')"
    for source in ("ledger", "bank")
)
# Where each named item stood when the run began. Standing: expired and not revived since. Resolved: its latest
# resolution (a reverse first on its day) matched or wrote it off. Matched: by any pass on an earlier day.
_NAMED_SQL = f"""
WITH latest AS (
  SELECT * FROM ({_STAGED})
  QUALIFY row_number() OVER (PARTITION BY source, txn_id ORDER BY origin_date DESC) = 1),
matched AS ({_MATCHED}),
last_event AS (
  SELECT r.source, r.txn_id, r.action, r.resolution_id FROM recon.resolved_items r JOIN named USING (source, txn_id)
  WHERE r.business_date < $first
  QUALIFY row_number() OVER (PARTITION BY r.source, r.txn_id
                             ORDER BY r.business_date DESC, r.action <> 'reverse' DESC) = 1),
standing AS (
  SELECT DISTINCT source, txn_id FROM recon.standing_breaks JOIN named USING (source, txn_id)
  WHERE business_date < $first AND (revived_on IS NULL OR revived_on >= $first))
SELECT l.*,
  CASE WHEN s.txn_id IS NOT NULL THEN '{_STANDING}' WHEN e.action IN ('match', 'write_off') THEN '{STATE_RESOLVED}'
       WHEN m.txn_id IS NOT NULL THEN '{STATE_MATCHED}' END AS state_before,
  CASE WHEN s.txn_id IS NULL AND e.action IN ('match', 'write_off') THEN e.resolution_id END AS resolved_by_id
FROM latest l LEFT JOIN standing s USING (source, txn_id) LEFT JOIN last_event e USING (source, txn_id)
  LEFT JOIN matched m USING (source, txn_id)
"""  # noqa: S608 (fixed names; values are bound)


def plan_resolutions(p: Planning, buckets: list[Bucket]) -> dict[str, list[PublishedFile]]:
    """Publish the run's resolutions to the buckets of their accounts, with what every bucket needs to judge
    them: the named items and where they stood, and the resolutions in force before the run. {} when the run's
    days have no resolutions."""
    first, last = p.days[0], p.days[-1]
    days = {"first": first, "last": last}
    with p.wh.reading():
        rows = p.wh.query(
            "SELECT * FROM raw.resolutions WHERE business_date BETWEEN $first AND $last "
            "ORDER BY business_date, file_name, line_number",
            days,
        ).cast(RAW_RESOLUTION_SCHEMA)  # type: ignore[arg-type]
        if rows.is_empty():
            return {}
        named = rows.filter(pl.col("action").is_in(_ITEM_ACTIONS) & pl.col("txn_id").is_not_null())
        named = named.select("source", "txn_id").unique()
        items = p.wh.query(_NAMED_SQL, days, frames={"named": named})
        ids = pl.concat([rows["resolution_id"], rows["reverses"]]).drop_nulls().unique().to_frame("resolution_id")
        log = p.wh.query(
            "SELECT * FROM ops.resolution_log WHERE business_date < $first "
            "AND resolution_id IN (SELECT resolution_id FROM ids) ORDER BY business_date, status",
            {"first": first},
            frames={"ids": ids},
        ).cast({**RESOLUTION_LOG_SCHEMA})  # type: ignore[arg-type]
        in_force_log = _in_force(log)
        columns = ", ".join(quote_ident(c) for c in HELD_ITEM_SCHEMA)
        in_force_items = p.wh.query(
            f"SELECT {columns} FROM recon.resolved_items WHERE business_date < $first "  # noqa: S608 (quoted names)
            "AND action <> 'reverse' AND resolution_id IN (SELECT resolution_id FROM in_force)",
            {"first": first},
            frames={"in_force": in_force_log.select("resolution_id")},
        )
        routed = _route(rows, items, in_force_log)
        accounts = pl.concat([routed["account_id"], items["account_id"]]).drop_nulls().unique().to_frame()
        bucket_of = p.wh.query(
            f"SELECT account_id, CAST(hash(account_id) % {int(buckets[0].count)} AS BIGINT) AS bucket FROM accounts",  # noqa: S608 (a number)
            frames={"accounts": accounts},
        )
    if len(buckets) == 1:
        bucket_of = bucket_of.with_columns(bucket=pl.lit(buckets[0].index, pl.Int64))
    routed = routed.join(bucket_of, on="account_id", how="left", maintain_order="left")
    items = items.join(bucket_of, on="account_id", how="left").cast(NAMED_SCHEMA).select(list(NAMED_SCHEMA))  # type: ignore[arg-type]
    shared = {
        "named": items,
        "before": log.filter(pl.col("status") == STATUS_APPLIED).select("resolution_id").unique(),
        "in_force_log": in_force_log,
        "in_force_items": in_force_items.cast(HELD_ITEM_SCHEMA),  # type: ignore[arg-type]
    }
    first_bucket = buckets[0].index
    published: dict[str, list[PublishedFile]] = {name: [] for name in ("resolutions", *shared)}
    for bucket in buckets:
        mine = pl.col("bucket").fill_null(first_bucket) == bucket.index
        published["resolutions"].append(
            p.publish(routed.filter(mine).drop("account_id", "bucket"), "resolutions", None, bucket.index)
        )
        for name, frame in shared.items():
            published[name].append(p.publish(frame, name, None, bucket.index))
    return published


def _in_force(log: pl.DataFrame) -> pl.DataFrame:
    """The log's applied rows of resolutions that no later row reversed."""
    last = log.group_by("resolution_id").agg(pl.col("status").sort_by("business_date").last().alias("_last"))
    return (
        log.filter(pl.col("status") == STATUS_APPLIED)
        .join(last.filter(pl.col("_last") == STATUS_APPLIED), on="resolution_id", how="semi")
        .unique("resolution_id", keep="last", maintain_order=True)
    )


def _route(rows: pl.DataFrame, items: pl.DataFrame, in_force_log: pl.DataFrame) -> pl.DataFrame:
    """Each row with the account its resolution is judged in: its first known item's, or for a reverse the
    reversed resolution's. Resolutions of several accounts are rejected wherever they are judged."""
    account_of_item = {(s, t): a for s, t, a in items.select("source", "txn_id", "account_id").iter_rows()}
    account_of_id = dict(in_force_log.select("resolution_id", "account_id").iter_rows())
    chosen: dict[tuple[date, str | None], str | None] = {}
    for day, resolution_id, action, source, txn_id, reverses in rows.select(
        "business_date", "resolution_id", "action", "source", "txn_id", "reverses"
    ).iter_rows():
        key = (day, resolution_id)
        if chosen.get(key) is None:
            if action == ACTION_REVERSE:
                chosen[key] = account_of_id.get(reverses)
            else:
                chosen[key] = account_of_item.get((source, txn_id))
        if chosen[key] is not None and resolution_id is not None:
            account_of_id.setdefault(resolution_id, chosen[key])
    accounts = [chosen[(d, r)] for d, r in rows.select("business_date", "resolution_id").iter_rows()]
    return rows.with_columns(account_id=pl.Series(accounts, dtype=pl.String))


@dataclass
class Book:
    """What a bucket knows of the named items and the resolutions in force, kept from day to day of the run."""

    bucket: int
    named: pl.DataFrame
    rows: pl.DataFrame
    state: dict[tuple[str, str], tuple[str | None, str | None]]
    applied: set[str]
    in_force: dict[str, dict[str, Any]]  # resolution id -> its log row
    in_force_items: dict[str, pl.DataFrame] = field(default_factory=dict)

    @classmethod
    def read(cls, work: BucketWork) -> Book | None:
        if "resolutions" not in work.task.inputs:
            return None
        named = work.read("named")
        items = work.read("in_force_items")
        return cls(
            bucket=work.task.bucket,
            named=named,
            rows=work.read("resolutions"),
            state={
                (s, t): (st, by)
                for s, t, st, by in named.select("source", "txn_id", "state_before", "resolved_by_id").iter_rows()
            },
            applied=set(work.read("before")["resolution_id"]),
            in_force={row["resolution_id"]: row for row in work.read("in_force_log").iter_rows(named=True)},
            in_force_items={rid: frame for (rid,), frame in items.group_by("resolution_id")},
        )

    def decide(
        self, day: date, candidates: dict[str, pl.DataFrame]
    ) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Judge and apply the day's resolutions of this bucket, reverses first (so a file can reverse and
        decide again). Returns the candidates left for the automatic passes, the manual matches, the moved
        items and the log rows."""
        rows = self.rows.filter(pl.col("business_date") == day).drop("business_date")
        empty = pl.DataFrame(schema=RESOLVED_ITEM_SCHEMA)
        if rows.is_empty():
            return (
                candidates,
                manual_matches(pl.DataFrame(schema=VERDICT_SCHEMA), empty, day),
                empty,
                _log(pl.DataFrame(schema=VERDICT_SCHEMA)),
            )
        first_action = rows.group_by("resolution_id", maintain_order=True).agg(pl.col("action").first().alias("_first"))
        rows = rows.join(first_action, on="resolution_id", how="left", maintain_order="left")
        reverses = rows.filter(pl.col("_first") == ACTION_REVERSE).drop("_first")
        decisions = rows.filter(pl.col("_first").ne_missing(ACTION_REVERSE)).drop("_first")
        verdicts, moved, log = [], [], []
        for part in (reverses, decisions):
            if part.is_empty():
                continue
            states = self._states(day, candidates)
            judged = judge_resolutions(
                part.lazy(),
                states.select(list(_STATE_COLUMNS)).lazy(),
                pl.DataFrame({"resolution_id": sorted(self.applied)}, schema={"resolution_id": pl.String}).lazy(),
                day,
                pl.DataFrame({"resolution_id": sorted(self.in_force)}, schema={"resolution_id": pl.String}).lazy(),
            ).collect()
            given_back = (
                pl.concat([pl.DataFrame(schema=HELD_ITEM_SCHEMA), *self.in_force_items.values()])
                if self.in_force_items
                else pl.DataFrame(schema=HELD_ITEM_SCHEMA)
            )
            items = resolved_items(judged, part, states.drop("state", "resolved_by_id"), given_back, day)
            candidates = self._apply(judged, items, candidates, day, log)
            verdicts.append(judged)
            moved.append(items)
        verdicts_of_day = pl.concat(verdicts)
        moved_of_day = pl.concat(moved)
        matches = manual_matches(verdicts_of_day, moved_of_day.filter(pl.col("action") == ACTION_MATCH), day)
        log_rows = pl.concat([verdicts_of_day, *log]) if log else verdicts_of_day
        return candidates, matches, moved_of_day, _log(log_rows)

    def _states(self, day: date, candidates: dict[str, pl.DataFrame]) -> pl.DataFrame:
        """Each named item's state on the day: a candidate (or an item of another bucket) is open, a standing
        break is open and revived when named, and an item not staged by the day is unknown."""
        here = pl.concat(
            [
                candidates[s].select(pl.lit(s).alias("source"), "txn_id", pl.lit(True).alias("_candidate"))
                for s in candidates
            ]
        )
        known = self.named.filter(pl.col("origin_date") <= day).join(here, on=["source", "txn_id"], how="left")
        rows = []
        for item in known.iter_rows(named=True):
            state, by = self.state.get((item["source"], item["txn_id"]), (None, None))
            if item["_candidate"] or item["bucket"] != self.bucket:
                state, by, standing = STATE_OPEN, None, False
            else:
                standing = state == _STANDING
                state = STATE_OPEN if standing else state
            rows.append({**item, "state": state, "resolved_by_id": by, "standing": standing})
        columns = {**NAMED_SCHEMA, "state": pl.String(), "standing": pl.Boolean()}
        frame = pl.DataFrame(rows, schema={**columns, "_candidate": pl.Boolean()}).drop(
            "_candidate", "state_before", "bucket"
        )
        # An item nobody knows has no row, so the judge calls it unknown.
        return frame.filter(pl.col("state").is_not_null())

    def _apply(
        self, judged: pl.DataFrame, items: pl.DataFrame, candidates: dict[str, pl.DataFrame], day: date, log: list
    ) -> dict[str, pl.DataFrame]:
        """Move the applied resolutions' items: decided ones leave the candidates, given-back ones join them."""
        applied = judged.filter(pl.col("status") == STATUS_APPLIED)
        for row in applied.iter_rows(named=True):
            rid = row["resolution_id"]
            self.applied.add(rid)
            if row["action"] == ACTION_REVERSE:
                undone = self.in_force.pop(row["reverses"])
                self.in_force_items.pop(row["reverses"], None)
                log.append(
                    pl.DataFrame(
                        [
                            {
                                **undone,
                                "business_date": day,
                                "status": STATUS_REVERSED,
                                "reason": f"reversed by {rid}",
                                "file_name": row["file_name"],
                                "line_number": row["line_number"],
                            }
                        ],
                        schema=RESOLUTION_LOG_SCHEMA,
                    ).select(list(VERDICT_SCHEMA))
                )
            else:
                self.in_force[rid] = {**row, "run_id": None}
                self.in_force_items[rid] = items.filter(pl.col("resolution_id") == rid).select(list(HELD_ITEM_SCHEMA))
        for source in ("ledger", "bank"):
            mine = items.filter(pl.col("source") == source)
            decided = mine.filter(pl.col("action") != ACTION_REVERSE).select("txn_id")
            back = mine.filter(pl.col("action") == ACTION_REVERSE).select(list(ITEM_SCHEMA)).cast(ITEM_SCHEMA)  # type: ignore[arg-type]
            candidates[source] = pl.concat([candidates[source].join(decided, on="txn_id", how="anti"), back])
        for source, txn_id, action, rid in items.select("source", "txn_id", "action", "resolution_id").iter_rows():
            self.state[(source, txn_id)] = (None, None) if action == ACTION_REVERSE else (STATE_RESOLVED, rid)
        return candidates

    def after_passes(self, matches: pl.DataFrame, left_open: pl.DataFrame) -> None:
        """Where the named items stand after the day's automatic passes."""
        for source in ("ledger", "bank"):
            for txn_id in matches[f"{source}_txn_id"].drop_nulls():
                if (source, txn_id) in self.state:
                    self.state[(source, txn_id)] = (STATE_MATCHED, None)
        for source, txn_id, carried in left_open.select("source", "txn_id", "carried").iter_rows():
            if (source, txn_id) in self.state:
                self.state[(source, txn_id)] = (None, None) if carried else (_STANDING, None)


_STATE_COLUMNS = ("source", "txn_id", "state", "resolved_by_id", "account_id", "currency", "amount")


def _log(verdicts: pl.DataFrame) -> pl.DataFrame:
    """Log rows (the run that applied them is filled in at the commit)."""
    return (
        verdicts.with_columns(run_id=pl.lit(None, pl.String))
        .select(list(RESOLUTION_LOG_SCHEMA))
        .cast(RESOLUTION_LOG_SCHEMA)
    )  # type: ignore[arg-type]
