"""The perturbation rates of the sample data, with realistic defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Rates:
    """How often each kind of real-world mess appears in the generated data.

    Every rate is a probability in [0, 1]. The defaults are what a mid-sized company's daily
    ledger-against-bank reconciliation typically looks like:

    - ``lag`` (0.10): share of pairs and batches whose bank line is booked 1 to 3 days after the
      ledger item; ``lag_weights`` (0.7, 0.2, 0.1) splits that share over 1, 2 and 3 days. A bank line
      that would land after the last generated day is not delivered, so its ledger item stays open.
    - ``amount_mismatch`` (0.005): share of one-to-one pairs where the bank deducted (credits) or
      added (debits) a small fee; the reference stays the same.
    - ``ledger_only`` (0.005) / ``bank_only`` (0.003): items with no partner on the other side, as a
      share of the day's ledger rows.
    - ``batch`` (0.02): share of bank lines that settle a many-to-one batch of ``batch_min`` to
      ``batch_max`` (2-8) ledger items with the same account, currency, booking date and reference.
    - ``reference_cosmetic`` (0.12): bank references re-cased or with spaces/dashes changed; they
      still normalise equal to the ledger's.
    - ``reference_prefixed`` (0.02): bank references with a ``REF `` prefix, so they normalise
      differently.
    - ``reference_missing`` (0.03): bank references sent as ``NONREF``, ``NOTPROVIDED`` or empty,
      all of which normalise to null.
    - ``ledger_reference_missing`` (0.01): one-to-one and ledger-only items booked without a
      reference.
    - ``negative`` (0.15): share of one-to-one and ledger-only items that are debits or refunds
      (a true pair always has the same sign on both sides); batches use ``negative_batch`` (0.05).
    - ``duplicate`` (0.001): share of each side's valid rows re-sent as an exact copy later in the
      same day's files.
    - ``invalid`` (0.001): share of each side's rows broken so that they must be quarantined, spread
      over the quarantine rules the file format can carry.
    """

    lag: float = 0.10
    lag_weights: tuple[float, float, float] = (0.7, 0.2, 0.1)
    amount_mismatch: float = 0.005
    ledger_only: float = 0.005
    bank_only: float = 0.003
    batch: float = 0.02
    batch_min: int = 2
    batch_max: int = 8
    reference_cosmetic: float = 0.12
    reference_prefixed: float = 0.02
    reference_missing: float = 0.03
    ledger_reference_missing: float = 0.01
    negative: float = 0.15
    negative_batch: float = 0.05
    duplicate: float = 0.001
    invalid: float = 0.001

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("batch_min", "batch_max", "lag_weights"):
                continue
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Rates.{field.name} must be in [0, 1], got {value}")
        if not 2 <= self.batch_min <= self.batch_max:
            raise ValueError("Rates needs 2 <= batch_min <= batch_max")
        if len(self.lag_weights) != 3 or min(self.lag_weights) < 0 or sum(self.lag_weights) <= 0:
            raise ValueError("Rates.lag_weights needs three non-negative weights for 1, 2 and 3 days")
        if self.reference_cosmetic + self.reference_prefixed + self.reference_missing > 1.0:
            raise ValueError("the bank reference rates add up to more than 1")
        if self.ledger_only + self.batch > 1.0:
            raise ValueError("ledger_only + batch must not exceed 1")

    @property
    def batch_mean_size(self) -> float:
        return (self.batch_min + self.batch_max) / 2
