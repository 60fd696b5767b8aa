"""Start-up: loading the code location imports neither the sample-data generator, nor the report code, nor an
HTTP client, and `batch-assets --help` imports no Dagster. A static scan of the package's module-level imports
(with proof that it catches one), and a fresh interpreter's sys.modules, which is what the scan stands for."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import batch_assets

PACKAGE = Path(batch_assets.__file__).resolve().parent
# Imported by the command, step or report that uses them, never by loading the code location: every process
# that loads it (`dg launch`, a run worker, the code server, `batch-assets run`) would pay for them.
NOT_AT_LOAD = (
    "batch_assets.generator",  # sample data: `batch-assets generate` and `demo`, the tests and benchmarks
    "batch_assets.transforms.scoring",  # precision and recall against the ground truth: reports only
    "batch_assets.operations",  # the command line's runs and reports
    "batch_assets.cli",
    "benchmarks",
    "numpy",
    "pandas",
    "pyarrow",  # what the generator builds strings with; DuckDB and Polars import it when a step hands data over
    "urllib.request",  # the alert webhook's client: imported when an alert is posted
    "http.client",
)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when a module is imported: at module level, in class bodies and in the
    blocks of if, try and with; not in function bodies, nor under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time_statements(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time_statements(node.body)


def _project_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "batch_assets":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_at_import_time(source: str, module: str) -> set[str]:
    """Every module that importing `module` (whose text is `source`) imports by itself: the modules its
    import-time statements name, their parent packages, and `from package import submodule` submodules."""
    is_package = _project_file(module) is not None and _project_file(module).name == "__init__.py"
    names: set[str] = set()
    for node in _import_time_statements(ast.parse(source).body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:  # relative: from the module's own package upwards
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if _project_file(f"{base}.{alias.name}"))
    with_parents = set(names)
    for name in names:
        parts = name.split(".")
        with_parents.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return with_parents


def code_location_imports() -> set[str]:
    """The modules that loading the code location imports through the package's own module-level imports:
    from batch_assets.definitions and every module under batch_assets/defs (Dagster's defs-folder loader
    imports each), followed through every batch_assets module they reach."""
    start = ["batch_assets.definitions"] + [
        "batch_assets." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted((PACKAGE / "defs").rglob("*.py"))
    ]
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _project_file(module)
        if path is not None:
            todo.extend(imported_at_import_time(path.read_text(encoding="utf-8"), module) - seen)
    return seen


def offenders(modules: set[str] | list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_AT_LOAD))


@pytest.mark.unit
def test_the_scan_sees_module_level_imports_and_not_those_in_functions_or_under_type_checking() -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import numpy as np
        from batch_assets import generator
        try:
            import pandas
        except ImportError:
            pandas = None
        if TYPE_CHECKING:
            from batch_assets.transforms.scoring import Score
        class Thing:
            import http.client
        def post():
            import urllib.request
        """
    )
    found = imported_at_import_time(source, "batch_assets.example")
    assert offenders(found) == ["batch_assets.generator", "http.client", "numpy", "pandas"]
    assert {"typing", "batch_assets", "http"} <= found


@pytest.mark.unit
def test_loading_the_code_location_imports_no_generator_report_code_or_http_client() -> None:
    imported = code_location_imports()
    assert {"batch_assets.defs.reconcile.summary", "batch_assets.alerts", "polars", "duckdb"} <= imported
    assert offenders(imported) == []


@pytest.mark.unit
def test_the_command_line_imports_only_the_standard_library_until_a_command_runs() -> None:
    # `batch-assets --help` and a mistyped argument answer at once; each command imports what it uses.
    source = (PACKAGE / "cli.py").read_text(encoding="utf-8")
    imported = {name.split(".")[0] for name in imported_at_import_time(source, "batch_assets.cli")}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)


def _modules_after(code: str) -> list[str]:
    """sys.modules of a fresh interpreter after running `code`."""
    script = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_a_fresh_interpreter_loading_the_code_location_imports_none_of_them() -> None:
    modules = _modules_after("from batch_assets.definitions import defs")
    assert "batch_assets.defs.reconcile.summary" in modules
    assert offenders(modules) == []


def test_batch_assets_help_in_a_fresh_interpreter_imports_no_dagster_polars_or_duckdb() -> None:
    # The help text goes to a buffer, so that stdout holds only the module names.
    modules = _modules_after(
        "import contextlib, io\nfrom batch_assets import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    cli.main(['--help'])"
    )
    assert "batch_assets.cli" in modules
    assert [m for m in modules if m.split(".")[0] in {"dagster", "pydantic", "polars", "duckdb", "numpy"}] == []
