"""Which code a record's numbers come from: a digest of that code's content, never of its paths.

The code is lpi_core (less its read-side modules) and the record modules beside this file
(`RECORD_MODULES`), found by path: this module imports none of them. A file counts as its syntax
tree without docstrings, annotations and import statements (their bound names kept), so
reformatting, comments, docstrings, type hints, sorted imports and moving or renaming a module
leave the digest as it was, and a change to what the code does changes it (a cached record is
then recomputed).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

import lpi_core

READ_SIDE = ("labels.py", "routing.py")  # lpi_core modules that read results, never compute a record's numbers
RECORD_MODULES = ("compute.py", "ablations.py")  # beside this file: the record's own code (not the storage code)


def record_code_files() -> list[Path]:
    """The sources a record's numbers depend on: lpi_core less `READ_SIDE`, and `RECORD_MODULES`."""
    engine = [p for p in Path(lpi_core.__file__).parent.rglob("*.py") if p.name not in READ_SIDE]
    return sorted(engine) + [Path(__file__).parent / name for name in RECORD_MODULES]


DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)  # what can open with a docstring


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:]
    return body


def code_digest(source: str) -> str:
    """sha256 of the code in `source`: its syntax tree, unparsed, without docstrings, annotations
    and imports (what an import binds is code hashed where it is the project's, and a versioned
    library otherwise; so moving a module or sorting imports changes nothing), with the sorted
    names the imports bind."""
    tree = ast.parse(source)
    bound: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound += [alias.asname or alias.name.split(".")[0] for alias in node.names]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)  # an annotated field stays a field (dataclasses)
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if isinstance(statements, list):
                kept = [s for s in statements if not isinstance(s, (ast.Import, ast.ImportFrom))]
                if field == "body" and isinstance(node, DEFINITIONS):
                    kept = _without_docstring(kept)
                setattr(node, field, kept)  # hashed, never run: an emptied body needs no `pass`
    code = ast.unparse(tree) + "\n# imports: " + " ".join(sorted(bound))
    return hashlib.sha256(code.encode()).hexdigest()


def files_digest(paths: list[Path]) -> str:
    """One digest of the files' code (`code_digest`), whatever their names and order."""
    digests = sorted(code_digest(Path(p).read_text(encoding="utf-8")) for p in paths)
    return hashlib.sha256("".join(digests).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """lpi_core's version and the digest of `record_code_files()`."""
    return f"{lpi_core.__version__}+{files_digest(record_code_files())[:12]}"
