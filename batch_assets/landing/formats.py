"""Which reader reads which file extension: every module of this package that declares EXTENSIONS is a reader.

A reader module has `EXTENSIONS` (the names' extensions it reads), optionally `SOURCES` (the sources that may
deliver it; both by default), `read(file, digest) -> ReadRows`, and optionally `locate_problem(path)`, which
names the line of a file its reader failed on. A new format is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

from batch_assets.transforms.contract import SOURCES


@cache
def readers() -> dict[str, ModuleType]:
    """Each extension's reader module, found once per process."""
    import batch_assets.landing as package

    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for extension in getattr(module, "EXTENSIONS", ()):
            if extension in found:
                raise RuntimeError(f".{extension} is read by both {found[extension].__name__} and {module.__name__}")
            found[extension] = module
    return found


def extensions(source: str) -> tuple[str, ...]:
    """The extensions that `source` may deliver, in a stable order."""
    return tuple(sorted(e for e, module in readers().items() if source in getattr(module, "SOURCES", SOURCES)))


def reader(extension: str) -> ModuleType:
    return readers()[extension]
