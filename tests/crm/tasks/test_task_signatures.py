"""Tasks take ids, never ORM objects (DESIGN.md section 3, rule 4).

The other layout rules are import-linter contracts in pyproject.toml; this one is about
annotations, which an import graph cannot see, so it stays a test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import crm.models as models

TASKS = Path(__file__).resolve().parents[3] / "crm" / "tasks"


def _names(annotation: ast.expr) -> set[str]:
    """Every name an annotation mentions: `Contact | None`, `models.Deal`, `"Deal"` alike."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    names = {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
    return names | {n.attr for n in ast.walk(annotation) if isinstance(n, ast.Attribute)}


def test_tasks_take_ids_not_orm_objects() -> None:
    """Task functions in crm/tasks annotate parameters with plain types, never models."""
    model_names = set(models.__all__)
    for path in sorted(TASKS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.AsyncFunctionDef):
                continue
            if not any("task" in ast.unparse(d) for d in node.decorator_list):
                continue
            for arg in node.args.args:
                if arg.annotation is not None:
                    named = _names(arg.annotation)
                    assert not named & model_names, (
                        f"{path.name}:{node.name} takes {arg.arg}: "
                        f"{ast.unparse(arg.annotation)}; pass an id"
                    )
