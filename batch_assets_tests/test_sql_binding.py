"""Every SQL statement the package runs binds its values: a static scan of the source, and proof that the scan
catches a statement that splices a value into its text."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import batch_assets

pytestmark = pytest.mark.unit

# Methods that take SQL text as their first argument: DuckDB's execute, executemany, sql and query, and the
# warehouse's own query, which hands its text to DuckDB.
SINKS = frozenset({"execute", "executemany", "sql", "query"})
# Functions whose result is safe to splice whatever their argument: identifier and literal quoting, type names
# and numbers.
SANITIZERS = frozenset({"qualified", "quote_ident", "quote_literal", "duckdb_type", "int", "len"})
# Functions that pass their argument's elements through unchanged.
PASS_THROUGH = frozenset({"sorted", "list", "tuple", "reversed", "set", "str"})

Path_ = tuple  # a selector path: "E" is "an element of", an int is "this position of a tuple"


@dataclass
class Module:
    name: str
    tree: ast.Module
    constants: dict[str, list[ast.expr]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)


@dataclass
class Function:
    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef
    is_method: bool

    @property
    def params(self) -> list[ast.arg]:
        args = self.node.args
        return [*args.posonlyargs, *args.args, *args.kwonlyargs]


@dataclass(frozen=True)
class Scope:
    """Where a name is looked up: a module, the function around the expression (if any), comprehension
    variables, and, when a function is analysed for one call, what that call passed for its parameters."""

    module: Module
    function: Function | None = None
    comprehension: tuple[tuple[ast.expr, ast.expr, tuple], ...] = ()  # (target, iterable, path to the target)
    bindings: tuple[tuple[str, ast.expr, Scope], ...] | None = None


class SqlChecker:
    """A small taint analysis of SQL text. A statement is safe when everything spliced into it is a constant,
    a module-level constant, an int, a quoted identifier (qualified/quote_ident), or a local, parameter,
    dataclass field or helper's return that is itself only ever built from those. A parameter is followed to
    every call site in the package; a dataclass field to every construction and default."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.modules = {name: self._load(name, text) for name, text in sources.items()}
        self.functions: dict[str, list[Function]] = {}
        self.fields: dict[str, list[tuple[str, int, ast.expr | None]]] = {}  # field -> (class, position, default)
        self.calls: list[tuple[Module, ast.Call, Scope]] = []  # each call with the scope it is made in
        for module in self.modules.values():
            self._index(module)
        self._in_progress: set[tuple[int, Path_, int]] = set()

    @staticmethod
    def _load(name: str, text: str) -> Module:
        module = Module(name, ast.parse(text))
        for node in module.tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        module.constants.setdefault(target.id, []).append(node.value)
                    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                        module.constants.setdefault(target.value.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                module.constants.setdefault(node.target.id, []).append(node.value)
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = (node.module, alias.name)
        return module

    def _index(self, module: Module) -> None:
        def visit(node: ast.AST, function: Function | None, in_class: bool, comprehension: tuple) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    inner = Function(module, child, is_method=in_class)
                    self.functions.setdefault(child.name, []).append(inner)
                    visit(child, inner, False, ())
                elif isinstance(child, ast.ClassDef):
                    position = 0
                    for statement in child.body:
                        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                            self.fields.setdefault(statement.target.id, []).append(
                                (child.name, position, statement.value)
                            )
                            position += 1
                    visit(child, function, True, ())
                elif isinstance(child, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
                    # A call inside a comprehension sees its loop variables: keep them with the call.
                    inner_comprehension = (*comprehension, *((g.target, g.iter, ("E",)) for g in child.generators))
                    visit(child, function, in_class, inner_comprehension)
                else:
                    if isinstance(child, ast.Call):
                        self.calls.append((module, child, Scope(module, function, comprehension)))
                    visit(child, function, in_class, comprehension)

        visit(module.tree, None, False, ())

    # -- the scan ----------------------------------------------------------------------------------------

    def sinks(self) -> Iterator[tuple[Module, ast.Call, Scope]]:
        for module, call, scope in self.calls:
            if isinstance(call.func, ast.Attribute) and call.func.attr in SINKS:
                yield module, call, scope

    def check(self) -> tuple[list[str], list[str]]:
        """(every statement checked, every problem found), each as 'module:line: source'."""
        checked, problems = [], []
        for module, call, scope in self.sinks():
            where = f"{module.name}:{call.lineno}"
            text = _sql_argument(call)
            checked.append(f"{where}: {ast.unparse(call)[:80]}")
            if text is None:
                problems.append(f"{where}: SQL text passed in a way that cannot be checked: {ast.unparse(call)[:120]}")
                continue
            for problem in self.safe(text, (), scope):
                problems.append(f"{where}: {problem}")
        return checked, sorted(set(problems))

    def safe(self, expr: ast.expr, path: Path_, scope: Scope) -> list[str]:
        """Why `expr` (or the part of it that `path` selects) may not be spliced into SQL; empty when it may."""
        key = (id(expr), path, id(scope.bindings))
        if len(path) > 8:
            return [f"too deeply nested to follow: {ast.unparse(expr)[:120]}"]
        if key in self._in_progress:
            return []  # a cycle: judged by its other definitions
        self._in_progress.add(key)
        try:
            return self._safe(expr, path, scope)
        finally:
            self._in_progress.discard(key)

    def _safe(self, expr: ast.expr, path: Path_, scope: Scope) -> list[str]:
        def unsafe(why: str) -> list[str]:
            return [f"{why}: {ast.unparse(expr)[:120]}"]

        match expr:
            case ast.Constant():
                return []
            case ast.JoinedStr():
                return [
                    p
                    for part in expr.values
                    if isinstance(part, ast.FormattedValue)
                    for p in self.safe(part.value, (), scope)
                ]
            case ast.BinOp() | ast.BoolOp() | ast.IfExp():
                parts = (
                    [expr.left, expr.right]
                    if isinstance(expr, ast.BinOp)
                    else expr.values
                    if isinstance(expr, ast.BoolOp)
                    else [expr.body, expr.orelse]
                )
                return [p for part in parts for p in self.safe(part, path, scope)]
            case ast.Tuple() | ast.List() | ast.Set():
                if path and isinstance(path[0], int):
                    return self.safe(expr.elts[path[0]], path[1:], scope) if path[0] < len(expr.elts) else []
                rest = path[1:] if path and path[0] == "E" else path
                return [
                    p
                    for elt in expr.elts
                    for p in self.safe(elt.value if isinstance(elt, ast.Starred) else elt, rest, scope)
                ]
            case ast.Dict():
                return [
                    p for part in [*expr.keys, *expr.values] if part is not None for p in self.safe(part, (), scope)
                ]
            case ast.ListComp() | ast.GeneratorExp() | ast.SetComp():
                inner = scope
                for generator in expr.generators:
                    inner = Scope(
                        inner.module,
                        inner.function,
                        (*inner.comprehension, (generator.target, generator.iter, ("E",))),
                        inner.bindings,
                    )
                return self.safe(expr.elt, path[1:] if path and path[0] == "E" else path, inner)
            case ast.Starred():
                return self.safe(expr.value, path, scope)
            case ast.Subscript():
                index = expr.slice
                selector = index.value if isinstance(index, ast.Constant) and isinstance(index.value, int) else "E"
                return self.safe(expr.value, (selector, *path), scope)
            case ast.Name():
                return self._name(expr, path, scope)
            case ast.Attribute():
                return self._field(expr, path)
            case ast.Call():
                return self._call(expr, path, scope)
        return unsafe("not a constant, an identifier or a bound value")

    def _name(self, expr: ast.Name, path: Path_, scope: Scope) -> list[str]:
        name = expr.id
        for target, iterable, prefix in reversed(scope.comprehension):
            selected = _select(target, name)
            if selected is not None:
                outer = Scope(scope.module, scope.function, (), scope.bindings)
                return self.safe(iterable, (*prefix, *selected, *path), outer)
        function = scope.function
        if function is not None:
            if scope.bindings is not None:
                for bound, value, caller in scope.bindings:
                    if bound == name:
                        return self.safe(value, path, caller)
            definitions = list(_local_definitions(function.node, name, path))
            if definitions:
                return [p for value, selected in definitions for p in self.safe(value, selected, scope)]
            if any(param.arg == name for param in function.params):
                return self._parameter(function, name, path)
        return self._global(scope.module, name, path, expr)

    def _global(self, module: Module, name: str, path: Path_, expr: ast.expr) -> list[str]:
        if name in module.constants:
            # A module-level constant is judged whole, whatever part of it is used.
            return [p for value in module.constants[name] for p in self.safe(value, (), Scope(module))]
        if name in module.imports:
            source, original = module.imports[name]
            if source in self.modules:
                return self._global(self.modules[source], original, path, expr)
        return [f"{name} is not a constant, an identifier or a bound value defined in the package"]

    def _parameter(self, function: Function, name: str, path: Path_) -> list[str]:
        """A parameter is as safe as what every call site in the package passes for it."""
        params = function.params
        position = next(i for i, param in enumerate(params) if param.arg == name)
        defaults = function.node.args.defaults
        first_default = len(function.node.args.posonlyargs) + len(function.node.args.args) - len(defaults)
        problems: list[str] = []
        if position >= first_default and position - first_default < len(defaults):
            problems += self.safe(defaults[position - first_default], path, Scope(function.module))
        callers = 0
        for module, call, where in self.calls:
            callee = (
                call.func.attr
                if isinstance(call.func, ast.Attribute)
                else call.func.id
                if isinstance(call.func, ast.Name)
                else None
            )
            if callee != function.node.name:
                continue
            offset = 1 if function.is_method and isinstance(call.func, ast.Attribute) else 0
            argument = _argument(call, position - offset, name)
            if argument is _UNCHECKABLE:
                problems.append(f"{module.name}:{call.lineno}: passes {name} through *args/**kwargs")
            elif argument is not None:
                problems += [f"{module.name}:{call.lineno}: {p}" for p in self.safe(argument, path, where)]
            callers += 1
        if callers == 0:
            # Called from outside the package (Dagster, a user): nothing bounds what it is given.
            problems.append(f"parameter {name} of {function.node.name}() comes from outside the package")
        return problems

    def _field(self, expr: ast.Attribute, path: Path_) -> list[str]:
        """An attribute read is as safe as every value the field can hold: its default, every construction of
        its dataclass, and every assignment to an attribute of that name."""
        known = self.fields.get(expr.attr)
        if not known:
            return [f"attribute {expr.attr} is not a field of a dataclass in the package: {ast.unparse(expr)[:120]}"]
        problems: list[str] = []
        for module in self.modules.values():
            for node in ast.walk(module.tree):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Attribute) and target.attr == expr.attr:
                            problems += self.safe(node.value, path, Scope(module))
        for class_name, position, default in known:
            if default is not None:
                problems += self.safe(default, path, Scope(self._module_of_class(class_name)))
            for module, call, where in self.calls:
                if isinstance(call.func, ast.Name) and call.func.id == class_name:
                    argument = _argument(call, position, expr.attr)
                    if argument is _UNCHECKABLE:
                        problems.append(f"{module.name}:{call.lineno}: builds {class_name} from *args/**kwargs")
                    elif argument is not None:
                        problems += [f"{module.name}:{call.lineno}: {p}" for p in self.safe(argument, path, where)]
        return problems

    def _module_of_class(self, class_name: str) -> Module:
        for module in self.modules.values():
            if any(isinstance(n, ast.ClassDef) and n.name == class_name for n in module.tree.body):
                return module
        raise LookupError(class_name)

    def _call(self, expr: ast.Call, path: Path_, scope: Scope) -> list[str]:
        func = expr.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if isinstance(func, ast.Name) and name in SANITIZERS:
            return []
        if isinstance(func, ast.Attribute) and name == "join":
            return self.safe(func.value, (), scope) + [p for a in expr.args for p in self.safe(a, ("E",), scope)]
        if isinstance(func, ast.Attribute) and name == "format":
            parts = [func.value, *expr.args, *(k.value for k in expr.keywords)]
            return [p for part in parts for p in self.safe(part, (), scope)]
        if isinstance(func, ast.Attribute) and name in ("items", "keys", "values"):
            return self.safe(func.value, (), scope)
        if isinstance(func, ast.Name) and name == "zip":
            if len(path) >= 2 and path[0] == "E" and isinstance(path[1], int) and path[1] < len(expr.args):
                return self.safe(expr.args[path[1]], ("E", *path[2:]), scope)
            return [p for a in expr.args for p in self.safe(a, ("E",), scope)]
        if isinstance(func, ast.Name) and name == "enumerate":
            if len(path) >= 2 and path[0] == "E" and path[1] == 0:
                return []
            return self.safe(expr.args[0], ("E", *path[2:]), scope)
        if isinstance(func, ast.Name) and name == "range":
            return []
        if isinstance(func, ast.Name) and name in PASS_THROUGH:
            return [p for a in expr.args for p in self.safe(a, path, scope)]
        helpers = self.functions.get(name or "", [])
        if helpers:
            return [p for helper in helpers for p in self._returns(helper, expr, path, scope)]
        return [f"the result of {ast.unparse(func)[:60]}() is not known to be safe: {ast.unparse(expr)[:120]}"]

    def _returns(self, helper: Function, call: ast.Call, path: Path_, caller: Scope) -> list[str]:
        """A helper's result, judged for this call: its parameters are what this call passes."""
        offset = 1 if helper.is_method and isinstance(call.func, ast.Attribute) else 0
        bindings = []
        for position, param in enumerate(helper.params):
            argument = _argument(call, position - offset, param.arg)
            if argument is _UNCHECKABLE:
                return [f"calls {helper.node.name} with *args/**kwargs"]
            if argument is not None:
                bindings.append((param.arg, argument, caller))
        scope = Scope(helper.module, helper, (), tuple(bindings))
        returns = [n.value for n in ast.walk(helper.node) if isinstance(n, ast.Return) and n.value is not None]
        return [p for value in returns for p in self.safe(value, path, scope)]


_UNCHECKABLE = object()


def _sql_argument(call: ast.Call) -> ast.expr | None:
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    for keyword in call.keywords:
        if keyword.arg in ("sql", "query"):
            return keyword.value
    return None


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | object | None:
    """What `call` passes for the parameter at `position` named `name`; None when it passes nothing (the
    default applies) and _UNCHECKABLE when *args or **kwargs may carry it."""
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    positional = list(call.args)
    for index, argument in enumerate(positional):
        if isinstance(argument, ast.Starred) and index <= position:
            return _UNCHECKABLE
        if index == position and position >= 0:
            return argument
    if any(keyword.arg is None for keyword in call.keywords):
        return _UNCHECKABLE
    return None


def _select(target: ast.expr, name: str) -> Path_ | None:
    """The path to `name` inside an assignment or loop target; None when the target does not bind it."""
    if isinstance(target, ast.Name):
        return () if target.id == name else None
    if isinstance(target, (ast.Tuple, ast.List)):
        for index, element in enumerate(target.elts):
            inner = _select(element, name)
            if inner is not None:
                return (index, *inner)
    return None


def _local_definitions(function: ast.AST, name: str, path: Path_) -> Iterator[tuple[ast.expr, Path_]]:
    """Every value the local `name` takes in `function` (not in nested functions), with the path into it."""

    def walk(node: ast.AST) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                yield child
                yield from walk(child)

    for node in walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                selected = _select(target, name)
                if selected is not None:
                    yield node.value, (*selected, *path)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            selected = _select(node.target, name)
            if selected is not None:
                yield node.value, (*selected, *path)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            selected = _select(node.target, name)
            if selected is not None:
                yield node.iter, ("E", *selected, *path)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None and _select(item.optional_vars, name) is not None:
                    yield item.context_expr, ("<with>",)
        elif isinstance(node, ast.NamedExpr) and node.target.id == name:
            yield node.value, path
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
            and path[:1] == ("E",)
        ):
            if node.func.attr in ("append", "add") and node.args:
                yield node.args[0], path[1:]
            elif node.func.attr == "insert" and len(node.args) == 2:
                yield node.args[1], path[1:]
            elif node.func.attr == "extend" and node.args:
                yield node.args[0], path


def package_sources() -> dict[str, str]:
    root = Path(batch_assets.__file__).parent
    return {
        ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): path.read_text()
        for path in sorted(root.rglob("*.py"))
    }


def check_snippet(code: str) -> list[str]:
    return SqlChecker({"snippet": textwrap.dedent(code)}).check()[1]


# -- the package ---------------------------------------------------------------------------------------


def test_every_sql_statement_in_the_package_binds_values_or_quotes_identifiers() -> None:
    checked, problems = SqlChecker(package_sources()).check()
    assert problems == []
    # The scan must have seen the statements, or it proves nothing: the warehouse's writes and reads, the
    # checks, the reports and the CSV structure check.
    modules = {entry.split(":")[0] for entry in checked}
    assert {
        "batch_assets.storage",
        "batch_assets.landing.csv_file",
        "batch_assets.defs.validate.checks",
        "batch_assets.defs.reconcile.checks",
        "batch_assets.operations",
    } <= modules
    assert len(checked) >= 25


@pytest.mark.parametrize(
    ("module", "addition", "flagged_in"),
    [
        # A SQL fragment field filled from data at one construction reaches storage's commit statement.
        (
            "batch_assets.defs.reconcile.match",
            "def _injected(day):\n"
            '    return PartitionWrite(MATCHES, day, [], amount_total_sql=f"sum(amount) + {day}")\n',
            "batch_assets.storage:",
        ),
        # A bucket key built from data reaches every bucketed read through bucket_predicate.
        (
            "batch_assets.storage",
            "def _injected(rows, account_id):\n    return Bucket(0, 2, f\"account_id = '{account_id}'\")\n",
            "batch_assets.storage:",
        ),
        # A check's WHERE clause built from the partition key.
        (
            "batch_assets.defs.reconcile.checks",
            "def _injected(wh, context, day):\n"
            "    return _summary_row(wh, day, f\"currency = '{context.partition_key}'\")\n",
            "batch_assets.defs.reconcile.checks:",
        ),
    ],
    ids=["partition-write-field", "bucket-key", "check-clause"],
)
def test_the_package_scan_fails_when_a_value_reaches_a_real_statement(
    module: str, addition: str, flagged_in: str
) -> None:
    sources = package_sources()
    sources[module] += "\n\n" + addition
    _, problems = SqlChecker(sources).check()
    assert any(problem.startswith(flagged_in) for problem in problems), problems


# -- the checker catches what it must --------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        # A value in an f-string, straight into execute.
        """
        def find(conn, value):
            conn.execute(f"SELECT * FROM recon.matches WHERE account_id = '{value}'")
        """,
        # Concatenation, .format and % formatting.
        """
        def find(conn, value):
            conn.execute("SELECT * FROM t WHERE x = '" + value + "'")
        """,
        """
        def find(conn, value):
            conn.sql("SELECT * FROM t WHERE x = '{}'".format(value))
        """,
        """
        def find(conn, value):
            conn.query("SELECT * FROM t WHERE x = '%s'" % value)
        """,
        # Through a local variable, and through a list of statements joined together.
        """
        def find(conn, value):
            text = f"DELETE FROM t WHERE x = '{value}'"
            conn.execute(text)
        """,
        """
        def find(conn, values):
            statements = ["BEGIN"]
            for value in values:
                statements.append(f"DELETE FROM t WHERE x = '{value}'")
            conn.execute(";".join(statements))
        """,
        # Through a helper that builds a clause, and through a clause parameter fed a value by its caller.
        """
        def clause(value):
            return f"x = '{value}'"

        def find(conn, value):
            conn.execute(f"SELECT 1 FROM t WHERE {clause(value)}")
        """,
        """
        def run(conn, where):
            conn.execute(f"SELECT 1 FROM t WHERE {where}")

        def caller(conn, file_name):
            run(conn, f"file_name = '{file_name}'")
        """,
        # Through a dataclass field that one construction fills from data.
        """
        from dataclasses import dataclass

        @dataclass
        class Filter:
            column: str
            predicate_sql: str = "TRUE"

        def read(conn, f):
            conn.execute(f"SELECT * FROM t WHERE {f.predicate_sql}")

        def caller(conn, account):
            read(conn, Filter("a", f"account_id = '{account}'"))
        """,
        # An attribute that is not a dataclass field, and an identifier not quoted.
        """
        def find(conn, row):
            conn.execute(f"SELECT * FROM t WHERE x = {row.value}")
        """,
        """
        def drop(conn, table):
            conn.execute(f"DROP TABLE {table}")

        def caller(conn, name):
            drop(conn, name.strip())
        """,
    ],
    ids=[
        "fstring",
        "concat",
        "format",
        "percent",
        "local",
        "joined-list",
        "helper",
        "clause-param",
        "dataclass-field",
        "attribute",
        "unquoted-identifier",
    ],
)
def test_the_checker_flags_a_value_spliced_into_sql(code: str) -> None:
    problems = check_snippet(code)
    assert problems, "the checker let a spliced value through"


def test_the_checker_accepts_bound_values_quoted_identifiers_constants_and_ints() -> None:
    problems = check_snippet(
        """
        from dataclasses import dataclass

        TABLE = "recon.matches"
        COLUMNS = {"a": "VARCHAR", "b": "BIGINT"}

        def quote_ident(name):
            return '"' + name.replace('"', '""') + '"'

        def qualified(table):
            return table

        @dataclass
        class Slice:
            index: int
            key_sql: str

        def predicate(piece):
            return f"hash({piece.key_sql}) % 4 = {int(piece.index)}"

        def read(conn, table, value, columns, limit):
            select = ", ".join(quote_ident(c) for c in columns) if columns else "*"
            conn.execute(f"SELECT {select} FROM {qualified(table)} WHERE x = ? LIMIT {int(limit)}", [value])
            conn.execute(f"SELECT * FROM {TABLE} WHERE {predicate(Slice(1, 'account_id'))}")
            statements = [f"CREATE TABLE IF NOT EXISTS {quote_ident(n)} ({cols})" for n, cols in COLUMNS.items()]
            conn.execute(";".join(statements))
        """
    )
    assert problems == []
