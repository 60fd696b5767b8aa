"""Sample-data generator: realistic, deterministic ledger and bank landing files with their ground truth."""

from batch_assets.generator.core import generate
from batch_assets.generator.rates import Rates
from batch_assets.generator.report import DayReport, GenerationReport

__all__ = ["DayReport", "GenerationReport", "Rates", "generate"]
