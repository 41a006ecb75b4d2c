"""Code shape: no function or method in jnet/ longer than 100 lines."""

import ast
import pathlib

import jnet

LIMIT = 100


def _long_functions(root: pathlib.Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} "
                                 f"{node.name} ({length} lines)")
    return found


def test_no_function_in_jnet_is_longer_than_100_lines():
    long = _long_functions(pathlib.Path(jnet.__file__).parent)
    assert not long, "functions over 100 lines:\n" + "\n".join(long)


def test_the_walker_finds_a_long_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (pkg / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert [line.split()[1] for line in _long_functions(pkg)] == ["long"]
