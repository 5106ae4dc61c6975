"""The store owns the database: no module outside studio/store runs SQL or reaches for its connection."""

from __future__ import annotations

import re
from pathlib import Path

import studio

ROOT = Path(studio.__file__).parent
# a call that runs SQL, the store's private connection or query helpers, or a connection of one's own
LEAK = re.compile(r"\.(execute|executemany|executescript)\(|\._conn\b|\.conn\.|\._(query|scalar|write)\(|"
                  r"sqlite3\.connect\(|\bimport sqlite3\b")


def leaks() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "store":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LEAK.search(line):
                found.append(f"studio/{rel}:{n}: {line.strip()}")
    return found


def test_no_sql_outside_the_store():
    assert leaks() == []


def test_the_check_sees_a_leak(tmp_path, monkeypatch):
    fake = tmp_path / "studio"
    (fake / "ui").mkdir(parents=True)
    (fake / "store").mkdir()
    (fake / "ui" / "view.py").write_text('rows = project._conn.execute("SELECT 1")\n')
    (fake / "store" / "ok.py").write_text('rows = self._conn.execute("SELECT 1")\n')
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert leaks() == ['studio/ui/view.py:1: rows = project._conn.execute("SELECT 1")']
