"""Every `error` code the service can answer, read from its source, and its problem codes.

Read with `ast`, not by running the service, so a code added anywhere is found without a
test for its route: an `AppError` subclass's `code = "..."` or `code="..."` among its bases,
a `code="..."` (or a module constant) passed to any call (`BadRequest(..., code=...)`), the
code argument of `error_response(...)`, `send_json_error(...)` and `BodyRefused(...)`, a
`{"error": "..."}` literal, and the status-to-code tables (`*_CODES`, with their
`.get(..., default)`).

Left out: the simulators (`sandbox/`, not the service), the dashboard's own pages (`web/`,
which the widget never calls) and the widget itself.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from amosync.accounts.problems import ProblemCode

SOURCE = Path(__file__).parents[2] / "src" / "amosync"
SKIPPED = ("sandbox/", "web/", "widget/")
CODE_FUNCTIONS = {"error_response", "send_json_error", "BodyRefused"}
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")

# What the widget says for failures that carry no code of the service's.
CLIENT_CODES = {
    "network",  # the service could not be reached (status 0)
    "unknown",  # a code this widget has no text for
    "no_key",  # onSave with an empty key
    "no_account",  # the page gives no account id
}


def service_codes(source: Path = SOURCE) -> dict[str, set[str]]:
    """code → the places (`path:line`) it comes from."""
    found: dict[str, set[str]] = {}
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source).as_posix()
        if relative.startswith(SKIPPED):
            continue
        for code, line in _codes_in(ast.parse(path.read_text(encoding="utf-8"))):
            if SNAKE.match(code):
                found.setdefault(code, set()).add(f"{relative}:{line}")
    return found


def problem_codes() -> set[str]:
    return {code.value for code in ProblemCode}


def _codes_in(tree: ast.Module) -> Iterator[tuple[str, int]]:
    constants: dict[str, str] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and _string(statement.value, {}) is not None:
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = _string(statement.value, {}) or ""

    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            # `class NotFound(AppError, status=404, code="not_found")`: a default in the bases.
            for keyword in node.keywords:
                if keyword.arg == "code":
                    code = _string(keyword.value, constants)
                    if code is not None:
                        yield code, node.lineno
            for statement in node.body:
                targets = (
                    statement.targets
                    if isinstance(statement, ast.Assign)
                    else [statement.target]
                    if isinstance(statement, ast.AnnAssign)
                    else []
                )
                value = getattr(statement, "value", None)
                if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                    code = _string(value, constants)
                    if code is not None:
                        yield code, statement.lineno
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            for keyword in node.keywords:
                if keyword.arg == "code":
                    code = _string(keyword.value, constants)
                    if code is not None:
                        yield code, node.lineno
            if name in CODE_FUNCTIONS:
                strings = [_string(arg, constants) for arg in node.args]
                code = next((s for s in strings if s is not None), None)
                if code is not None:
                    yield code, node.lineno
            if name == "get" and "CODES" in _name(getattr(node.func, "value", None)):
                for arg in node.args[1:]:
                    code = _string(arg, constants)
                    if code is not None:
                        yield code, node.lineno
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and _string(key, constants) == "error":
                    code = _string(value, constants)
                    if code is not None:
                        yield code, node.lineno
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            if any(isinstance(t, ast.Name) and "CODES" in t.id for t in node.targets):
                for value in node.value.values:
                    code = _string(value, constants)
                    if code is not None:
                        yield code, node.lineno


def _name(node: ast.AST | None) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _string(node: ast.AST | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None
