"""docs/trust.md's tables are the noise model's output, not typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_trust_docs_tables_are_the_scripts_output():
    spec = importlib.util.spec_from_file_location("precision_tables",
                                                  ROOT / "benchmarks" / "precision_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    page = (ROOT / "docs" / "trust.md").read_text()
    block = page.split(tables.BEGIN, 1)[1].split(tables.END, 1)[0]
    assert block.strip() == tables.render().strip(), \
        "docs/trust.md is stale: run `python benchmarks/precision_tables.py --write`"
