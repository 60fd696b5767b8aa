"""The landing zone: finding delivered files safely, fingerprinting them, and reading each format strictly into
text rows. `zone` finds and identifies deliveries, `rows` lands a delivery's rows, and each other module reads
one format (`formats` finds them)."""

from batch_assets.landing.rows import ReadRows, land_file, read_landing_file
from batch_assets.landing.zone import (
    DONE_SUFFIX,
    FileDigest,
    IgnoredFile,
    LandingFile,
    RejectedFile,
    digest_file,
    printable_name,
    scan_landing,
)

__all__ = [
    "DONE_SUFFIX",
    "FileDigest",
    "IgnoredFile",
    "LandingFile",
    "ReadRows",
    "RejectedFile",
    "digest_file",
    "land_file",
    "printable_name",
    "read_landing_file",
    "scan_landing",
]
