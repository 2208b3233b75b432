"""Build `ops/corpus-factbook/`: real documents for the real-model path (issue 21).

One markdown document per country of the CIA World Factbook (a work of the US Government, in
the public domain), read from a clone of `github.com/factbook/factbook.json`:
- key facts as "Key: Value" lines under the country's name (capital, area, population, ...);
- its "Background" paragraph (prose: dated events, who joined or declared what);
- an economy table, one row per year (growth, inflation, unemployment, exports).

Nothing else is changed: the words and numbers are the Factbook's own, HTML removed. Run once;
the output is committed:

    python -m ops.factbook /path/to/factbook.json ops/corpus-factbook --countries 120
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import re
import subprocess
from pathlib import Path

REGIONS = ("europe", "africa", "east-n-southeast-asia", "south-asia", "middle-east", "central-asia")
REGIONS += ("central-america-n-caribbean", "south-america", "north-america", "australia-oceania")
_TAG = re.compile(r"<[^>]+>")
_ESTIMATE = re.compile(r"\s*\((?:\d{4}|FY\d\d/\d\d) est\.\)|\s*\(\d{4}\)")
YEARS = ("2022", "2023", "2024")
ECONOMY = (  # (the Factbook's field, the column, the unit dropped from each cell)
    ("Real GDP growth rate", "GDP growth (%)", "%"),
    ("Inflation rate (consumer prices)", "Inflation (%)", "%"),
    ("Unemployment rate", "Unemployment (%)", "%"),
)


def clean(text: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _text(node: object) -> str:
    return clean(node["text"]) if isinstance(node, dict) and isinstance(node.get("text"), str) else ""


def _first(value: str) -> str:
    """The value before any parenthesis or semicolon, estimates dropped ("10,643,745 (2025 est.)")."""
    return _ESTIMATE.sub("", value).split(";")[0].split(" (")[0].strip()


def key_facts(country: dict) -> list[tuple[str, str]]:
    government, geography, people = (country.get(k, {}) for k in ("Government", "Geography", "People and Society"))
    wanted = [
        ("Capital", _text(government.get("Capital", {}).get("name"))),
        ("Independence", _text(government.get("Independence"))),
        ("Area", _text(geography.get("Area", {}).get("total ")) or _text(geography.get("Area", {}).get("total"))),
        ("Coastline", _text(geography.get("Coastline"))),
        ("Highest point", _text(geography.get("Elevation", {}).get("highest point"))),
        ("Population", _text(people.get("Population", {}).get("total"))),
        ("Median age", _text(people.get("Median age", {}).get("total"))),
        ("Life expectancy", _text(people.get("Life expectancy at birth", {}).get("total population"))),
    ]
    return [(k, v) for k, raw in wanted if (v := _first(raw)) and v.lower() not in ("none", "na") and len(v) <= 80]


def economy_rows(country: dict) -> list[list[str]]:
    economy = country.get("Economy", {})
    rows = []
    for year in YEARS:
        cells = []
        for field, _, unit in ECONOMY:
            value = _first(_text(economy.get(field, {}).get(f"{field} {year}")))
            cells.append(value.removesuffix(unit).strip())
        if all(re.fullmatch(r"-?\d+(\.\d+)?", c) for c in cells):
            rows.append([year, *cells])
    return rows


def render(country: dict) -> str | None:
    """The country's document, or None when it has no background or no name."""
    name = _text(country.get("Government", {}).get("Country name", {}).get("conventional short form"))
    background = _text(country.get("Introduction", {}).get("Background"))
    if not name or name == "none" or not background:
        return None
    lines = [f"# {name}", ""]  # the key facts' subject is the heading above them
    lines += [f"{key}: {value}" for key, value in key_facts(country)]
    lines += ["", "## Background", "", background]
    rows = economy_rows(country)
    if len(rows) >= 2:
        lines += ["", f"## Economy of {name}", ""]
        lines += ["| Year | " + " | ".join(column for _, column, _ in ECONOMY) + " |"]
        lines += ["|" + "---|" * (len(ECONOMY) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", type=Path, help="a git clone (bare or not) of factbook/factbook.json")
    parser.add_argument("out", type=Path)
    parser.add_argument("--countries", type=int, default=120, help="at most this many, the regions taken in turn")
    parser.add_argument("--commit", default="8662a8b", help="the commit read")
    args = parser.parse_args()

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(args.repo), "show", f"{args.commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout

    listing = subprocess.run(
        ["git", "-C", str(args.repo), "ls-tree", "-r", "--name-only", args.commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    by_region = [[p for p in listing if p.startswith(region + "/") and p.endswith(".json")] for region in REGIONS]
    paths = [p for turn in itertools.zip_longest(*by_region) for p in turn if p]  # regions in turn
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in paths:
        if written >= args.countries:
            break
        text = render(json.loads(show(path)))
        if text is not None:
            (args.out / f"{Path(path).stem}.md").write_text(text, encoding="utf-8")
            written += 1
    print(f"{written} documents in {args.out}")


if __name__ == "__main__":
    main()
