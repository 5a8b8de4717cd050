"""The party/server seam is enforced, not just claimed: import contracts and one round loop."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_keep_the_server_side_away_from_party_data_and_the_adversary():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The contract can fail: a server module that imports party data is reported."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    pkg = tmp_path / "deai"
    shutil.copytree(ROOT / "deai", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "server" / "leak.py").write_text("from deai.party.data import PartyShards\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = subprocess.run([exe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "deai.server.leak" in done.stdout


def test_there_is_one_round_loop():
    """Only the driver opens and releases rounds; no other module has a loop of its own."""
    callers = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "deai").rglob("*.py")
        if re.search(r"\.release\(\)", p.read_text()) and re.search(r"\.open_round\(\)", p.read_text())
    ]
    assert callers == ["deai/engine/driver.py"]
