"""The layout and import rules of DESIGN.md section 3, checked by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDGE_PACKAGES = ("bot", "channels", "telegram_transport", "agents", "miniapp")
SDKS = (
    "aiogram",
    "pywa",
    "fastapi",
    "starlette",
    "taskiq",
    "taskiq_redis",
    "litellm",
    "openai",
    "stripe",
    "uvicorn",
    "pydantic_settings",
)
COMPOSITION_ROOTS = {"crm/app.py", "crm/cli.py", "crm/settings.py", "crm/wiring.py"}


def _imports(path: Path, root: Path = ROOT) -> list[str]:
    """Every module a file imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
    return names


def _python_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".", 1)[0]


@pytest.mark.parametrize(
    "path", _python_files("crm/models", "crm/services"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_domain_imports_no_edge_and_no_sdk(path: Path) -> None:
    bad = [n for n in _imports(path) if _top(n) in EDGE_PACKAGES + SDKS]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the domain must stay SDK-free"


@pytest.mark.parametrize("path", _python_files("crm"), ids=lambda p: str(p.relative_to(ROOT)))
def test_crm_does_not_import_edges(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in COMPOSITION_ROOTS:
        return
    bad = [n for n in _imports(path) if _top(n) in EDGE_PACKAGES]
    assert not bad, f"{rel} imports {bad}: only the composition root wires edges in"


@pytest.mark.parametrize(
    "path", _python_files("crm", *EDGE_PACKAGES), ids=lambda p: str(p.relative_to(ROOT))
)
def test_only_the_composition_root_reads_settings(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in COMPOSITION_ROOTS:
        return
    assert "crm.settings" not in _imports(path), f"{rel} reads settings; pass values in instead"


def _channel_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "channels" and len(parts) > 2 else None


@pytest.mark.parametrize("path", _python_files("channels"), ids=lambda p: str(p.relative_to(ROOT)))
def test_channels_do_not_import_siblings_bot_or_miniapp(path: Path) -> None:
    own = _channel_of(path)
    for name in _imports(path):
        parts = name.split(".")
        assert parts[0] not in ("bot", "miniapp"), f"{path} imports {name}"
        if parts[0] == "channels" and len(parts) > 1 and own is not None:
            assert parts[1] in (own, "base", "registry"), f"{path} imports sibling {name}"


def test_tasks_take_ids_not_orm_objects() -> None:
    """Task functions in crm/tasks annotate parameters with plain types, never models."""
    import crm.models as models

    model_names = set(models.__all__)
    for path in _python_files("crm/tasks"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.AsyncFunctionDef):
                continue
            is_task = any("task" in ast.unparse(d) for d in node.decorator_list)
            if not is_task:
                continue
            for arg in node.args.args:
                annotation = ast.unparse(arg.annotation) if arg.annotation else ""
                assert not any(
                    m in annotation.split(".")[-1]
                    for m in model_names
                    if m == annotation.split(".")[-1]
                ), f"{path.name}:{node.name} takes {arg.arg}: {annotation}; pass an id"


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The walker itself works: a file importing an SDK is reported."""
    sample = tmp_path / "crm" / "services" / "probe.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("from fastapi import APIRouter\nfrom ..models import Contact\n")
    names = _imports(sample, tmp_path)
    assert "fastapi" in names and "crm.models" in names
