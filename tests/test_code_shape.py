"""The shape of the code: no function in linker/ grows past what a reader takes in at once.

Issue 10 asks for functions of at most about 80 lines; a longer one is split into named
helpers. A function's length here is its body's line span without the docstring (comments
and blank lines inside the body count: they are part of what a reader has to get through).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "linker"
MAX_BODY_LINES = 80

_Function = ast.FunctionDef | ast.AsyncFunctionDef


def body_lines(node: _Function) -> int:
    """Lines from the first statement after the docstring to the function's last line."""
    body = node.body
    first = body[0]
    is_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    if is_docstring:
        if len(body) == 1:
            return 0
        first = body[1]
    assert node.end_lineno is not None
    return node.end_lineno - first.lineno + 1


def long_functions(root: Path, limit: int) -> list[str]:
    """``path:line name (n lines)`` of each function (methods, nested ones) over ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, _Function) and (n := body_lines(node)) > limit:
                where = path.relative_to(root.parent).as_posix()
                found.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_no_function_in_linker_is_longer_than_80_lines() -> None:
    offenders = long_functions(PACKAGE, MAX_BODY_LINES)
    assert not offenders, (
        f"functions whose body (docstring excluded) is over {MAX_BODY_LINES} lines; "
        "split them into named helpers:\n  " + "\n  ".join(offenders)
    )


def test_the_length_count_skips_the_docstring_and_counts_the_rest(tmp_path: Path) -> None:
    source = '''
def documented():
    """A docstring

    over several lines.
    """
    a = 1
    # a comment

    return a


def bare():
    return 1


async def only_a_docstring():
    """Nothing else."""
'''
    module = tmp_path / "pkg" / "m.py"
    module.parent.mkdir()
    module.write_text(source, encoding="utf-8")
    functions = {
        node.name: body_lines(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, _Function)
    }
    assert functions == {"documented": 4, "bare": 1, "only_a_docstring": 0}
    assert long_functions(module.parent, 3) == ["pkg/m.py:2 documented (4 lines)"]
