#!/usr/bin/env python3
"""Copies queries/<name>.sql into template.yaml's named queries.

CloudFormation cannot include files, so each AWS::Athena::NamedQuery in template.yaml embeds its
SQL as a literal block below a marker comment:

      # sql: queries/daily_rates.sql
      QueryString: |
        ...the file's text, indented...

Run `python3 tests/template/sync_queries.py` after editing a query (`--check` only reports
whether the template is in sync and exits 1 if not). tests/template/test_template.py compares
the parsed QueryStrings with the files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
MARKER = re.compile(r"^(?P<indent> *)# sql: (?P<path>queries/[A-Za-z0-9_.-]+\.sql)\s*$")


def embedded_paths(text: str) -> list[str]:
    """The query files the template embeds, in template order."""
    return [m["path"] for line in text.splitlines() if (m := MARKER.match(line))]


def sync(text: str, root: Path = ROOT) -> str:
    """The template text with every marked QueryString replaced by its file's content."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        m = MARKER.match(line.rstrip("\n"))
        if not m:
            continue
        indent = m["indent"]
        key = lines[i] if i < len(lines) else ""
        if key.rstrip("\n") != f"{indent}QueryString: |":
            raise SystemExit(f"template.yaml: `{line.strip()}` must be followed by `QueryString: |`")
        out.append(key)
        i += 1
        # Skip the old block: blank lines and lines indented deeper than the key.
        while i < len(lines) and (
            not lines[i].strip() or lines[i].startswith(indent + "  ")
        ):
            i += 1
        sql = (root / m["path"]).read_text(encoding="utf-8").rstrip()
        first = sql.lstrip("\n").splitlines()[0] if sql.strip() else ""
        if not sql.strip() or first[:1] in (" ", "\t") or sql.startswith("\n"):
            raise SystemExit(f"{m['path']}: must not be empty or start with a blank or indented line")
        body = "".join(
            (indent + "  " + l if l.strip() else "") + "\n" for l in sql.splitlines()
        )
        out.append(body)
        out.append("\n")
    return "".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = TEMPLATE.read_text(encoding="utf-8")
    missing = [p for p in embedded_paths(text) if not (ROOT / p).is_file()]
    if missing:
        print("missing query files: " + ", ".join(missing), file=sys.stderr)
        return 1
    synced = sync(text)
    if "--check" in argv:
        if synced != text:
            print("template.yaml is out of sync with queries/: run tests/template/sync_queries.py")
            return 1
        print("template.yaml named queries match queries/")
        return 0
    if synced != text:
        TEMPLATE.write_text(synced, encoding="utf-8")
        print("template.yaml: named queries updated from queries/")
    else:
        print("template.yaml: named queries already match queries/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
