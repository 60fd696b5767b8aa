"""The code location: every definition under batch_assets/defs/, found by Dagster's defs-folder loader."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
