"""segtune/ is the layer every stage shares: it imports none of them (spaces, trainables, search, ensembles)."""

import ast
from pathlib import Path

STAGES = {"spaces", "trainables", "search", "ensembles"}
SHARED = Path(__file__).resolve().parents[1] / "segtune"


def test_the_shared_layer_imports_no_stage():
    found = []
    for file in sorted(SHARED.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            found += [f"{file.relative_to(SHARED.parent)}:{node.lineno} {m}" for m in modules if m.split(".")[0] in STAGES]
    assert not found, f"segtune/ imports a stage: {found}"
