"""Test modules share helpers only through tests/support: no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def imported_test_modules(path: Path, root: Path = ROOT) -> list[str]:
    """What ``path`` imports from under ``tests`` other than ``tests.support`` (sorted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(root).parent.parts
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None or module == "tests":
                # ``from tests import conftest``, ``from . import conftest``: modules by name.
                names += [f"{module}.{alias.name}" for alias in node.names]
            else:
                names.append(module)
    return sorted({n for n in names if n.startswith("tests.") and n.split(".")[1] != "support"})


@pytest.mark.parametrize(
    "path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_test_module_imports_another(path: Path) -> None:
    bad = imported_test_modules(path)
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: move what is shared to tests/support/"


@pytest.mark.parametrize(
    "line",
    [
        "from tests.bot.test_notify import onboard_in_russian",
        "from tests.conftest import Workspace",
        "import tests.crm.tasks.test_redis",
        "from tests import conftest",
        "from ..services.test_inbox import whatsapp_connection",
        "from . import conftest",
    ],
)
def test_a_seeded_import_of_a_test_module_is_found(tmp_path: Path, line: str) -> None:
    module = tmp_path / "tests" / "crm" / "api" / "test_seeded.py"
    module.parent.mkdir(parents=True)
    module.write_text(f"{line}\nfrom tests.support.workspace import Workspace\n")
    assert imported_test_modules(module, tmp_path)
    module.write_text("from tests.support.workspace import Workspace\nfrom tests import support\n")
    assert imported_test_modules(module, tmp_path) == []
