"""The records' code digest: of the code's content, so that formatting, docstrings, type hints,
import order and moving a module leave it unchanged, and a change to what the code does does not."""

from __future__ import annotations

from pathlib import Path

from claims.records.provenance import code_digest, code_version, files_digest, record_code_files

ORIGINAL = '''"""A module."""
from __future__ import annotations
import math
from .helpers import scale


def area(r: float) -> float:
    """The area."""
    return scale(math.pi * r ** 2)  # a comment
'''

SAME_CODE = {
    "reformatted, comments and docstrings changed": '''"""Another docstring."""
from __future__ import annotations
import math
from .helpers import scale
def area(r):
    return scale(math.pi*r**2)
''',
    "imports sorted and the helper moved": """from __future__ import annotations

from claims.elsewhere.helpers import scale
import math


def area(r: int) -> int:
    return scale(math.pi * r**2)
""",
}

OTHER_CODE = {
    "a constant changed": ORIGINAL.replace("** 2", "** 3"),
    "another name imported": ORIGINAL.replace("import scale", "import scale as scale2").replace(
        "return scale(", "return scale2("
    ),
    "an argument renamed": ORIGINAL.replace("r: float", "radius: float").replace("* r **", "* radius **"),
}


def test_the_digest_ignores_what_does_not_change_the_code():
    for label, source in SAME_CODE.items():
        assert code_digest(source) == code_digest(ORIGINAL), label


def test_the_digest_changes_with_the_code():
    digests = {code_digest(source) for source in OTHER_CODE.values()} | {code_digest(ORIGINAL)}
    assert len(digests) == len(OTHER_CODE) + 1


def test_files_digest_is_independent_of_names_and_order(tmp_path):
    a, b, moved = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "sub" / "renamed.py"
    moved.parent.mkdir()
    a.write_text(ORIGINAL)
    b.write_text(OTHER_CODE["a constant changed"])
    moved.write_text(ORIGINAL)
    assert files_digest([a, b]) == files_digest([b, moved])
    assert files_digest([a, b]) != files_digest([a, a])


def test_the_record_code_is_the_engine_and_the_record_modules():
    files = record_code_files()
    names = {Path(p).name for p in files}
    assert {"compute.py", "ablations.py", "lpi.py", "engine.py"} <= names
    storage = {"store.py", "provenance.py", "lease.py", "locks.py", "atomic.py", "cache.py"}
    assert not names & (storage | {"labels.py", "routing.py"})  # read-side: labelled arrays, drill-down
    assert all(Path(p).exists() for p in files)
    assert code_version().endswith("+" + files_digest(files)[:12])
