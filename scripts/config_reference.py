"""Rewrites the configuration reference in README.md from the config dataclasses' field docs.

    .venv/bin/python scripts/config_reference.py          # update README.md
    .venv/bin/python scripts/config_reference.py --check  # exit 1 if README.md is stale
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from zspace.config import field_docs, toml_value
from zspace.evaluation.evaluate import EvaluationConfig

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
TITLES = {"model": "`[model]` (run config)", "train": "`[train]` (run config)",
          "analysis": "Analysis config (`zspace analyze --config FILE.toml`, top-level keys)",
          "evaluation": "Evaluation config (`zspace evaluate --config FILE.toml`, top-level keys)"}


def evaluation_docs() -> list[tuple[str, str, str]]:
    defaults = EvaluationConfig().to_dict()
    return [(f.name, toml_value(defaults[f.name]), f.metadata["doc"]) for f in dataclasses.fields(EvaluationConfig)]


def reference() -> str:
    lines = []
    for section, rows in {**field_docs(), "evaluation": evaluation_docs()}.items():
        lines += ["", f"### {TITLES[section]}", "", "| field | default | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | `{default}` | {doc} |" for name, default, doc in rows]
    return "\n".join(lines) + "\n"


def updated(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{reference()}{END}{tail}"


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "README.md"
    text = path.read_text()
    if START not in text or END not in text:
        sys.exit(f"{path}: markers {START} / {END} not found")
    new = updated(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "README.md config reference is stale: run scripts/config_reference.py")
    path.write_text(new)
