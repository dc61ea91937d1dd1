"""The import-linter contracts of pyproject.toml: kept by the tree, broken by a seeded violation.

Each contract gets a seed: files written into a copy of the root packages that break that
contract and no other. ``lint-imports`` runs on the copy (``PYTHONPATH`` points at it, so the
copy is analysed, not the editable install) and must report exactly that contract broken.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONFIG = PYPROJECT["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
# One line per contract in the report: the contract's name, then KEPT or BROKEN.
VERDICT = re.compile(r"^(?P<name>.+?) (?P<verdict>KEPT|BROKEN)\b", re.MULTILINE)

# Contract id -> named seeds; a seed maps a file of the copy to a line appended to it (the file
# is created when missing). Seeds add new modules rather than edit product ones, so moving
# product code does not stale them.
SEEDS: dict[str, dict[str, dict[str, str]]] = {
    "layers": {
        "models-import-services": {
            "crm/services/probe_target.py": "",
            "crm/models/probe.py": "import crm.services.probe_target",
        },
    },
    "domain-sdk-free": {
        "service-imports-sdk": {"crm/services/probe.py": "import fastapi"},
        # crm.probe_helper is in no layer and may import fastapi itself: only the chain is wrong.
        "service-imports-sdk-indirectly": {
            "crm/probe_helper.py": "import taskiq",
            "crm/services/probe.py": "import crm.probe_helper",
        },
    },
    # crm.probe is in no layer: the layers contract cannot see it import an edge, this one does.
    "edges-wired-by-root": {"crm-module-imports-edge": {"crm/probe.py": "import miniapp"}},
    "settings-read-by-root": {"edge-reads-settings": {"bot/probe.py": "import crm.settings"}},
    "channels-independent": {
        "channel-imports-sibling": {"channels/whatsapp/probe.py": "import channels.telegram"},
    },
    "channels-bot-miniapp-apart": {
        "channel-imports-miniapp": {"channels/probe.py": "import miniapp"},
    },
}


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the packages under ``tree``, uncached, one line per verdict."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _verdicts(output: str) -> dict[str, str]:
    """Contract name -> KEPT or BROKEN, as lint-imports reported them."""
    return {m["name"]: m["verdict"] for m in VERDICT.finditer(output)}


def _copy_packages(target: Path) -> None:
    """The root packages' Python files and the contracts, without caches or data files."""
    for package in CONFIG["root_packages"]:
        for source in (ROOT / package).rglob("*.py"):
            copy = target / source.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    names = {contract["name"] for contract in CONTRACTS.values()}
    assert _verdicts(result.stdout) == dict.fromkeys(names, "KEPT"), result.stdout


def test_every_contract_has_a_seed() -> None:
    assert set(SEEDS) == set(CONTRACTS), "seed a violation for each contract, and no other"
    assert all(SEEDS.values())


def test_every_package_directory_is_seen_by_import_linter() -> None:
    """import-linter skips a directory without __init__.py, and every rule with it."""
    missing = sorted(
        str(directory.relative_to(ROOT))
        for package in CONFIG["root_packages"]
        for directory in {path.parent for path in (ROOT / package).rglob("*.py")}
        if not (directory / "__init__.py").exists()
    )
    assert not missing, f"add an __init__.py to {missing}"


@pytest.mark.parametrize(
    ("contract_id", "seed"),
    [(cid, seed) for cid in CONTRACTS for seed in SEEDS.get(cid, {None: {}})],
    ids=lambda value: str(value),
)
def test_a_seeded_violation_breaks_its_contract(
    tmp_path: Path, contract_id: str, seed: str | None
) -> None:
    assert seed is not None, f"contract {contract_id!r} has no seeded violation in SEEDS"
    _copy_packages(tmp_path)
    for relative, line in SEEDS[contract_id][seed].items():
        path = tmp_path / relative
        with path.open("a", encoding="utf-8") as module:
            module.write(f"\n{line}\n")

    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    broken = {name for name, verdict in _verdicts(result.stdout).items() if verdict == "BROKEN"}
    assert broken == {CONTRACTS[contract_id]["name"]}, result.stdout
