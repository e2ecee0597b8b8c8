r"""Write a seeded sample of BANKING77 test tickets with their department, as the demo reads it.

    python examples/data/sample_tickets.py --count 500 \
        --output examples/data/support_tickets_500.csv

``support_tickets.csv`` (40) and ``support_tickets_500.csv`` (500) are this script's output with
seed 0; the 40 are the first 40 of the 500. Departments come from
``examples/banking77_departments.yaml``. The test split is never trained on.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=HERE / "support_tickets.csv")
    args = parser.parse_args()
    grouping = yaml.safe_load((REPO / "examples" / "banking77_departments.yaml").read_text())
    department = {i: dept for dept, body in grouping.items() for i in body["intents"]}
    with (REPO / "data" / "banking77" / "test.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(args.seed).shuffle(rows)
    with args.output.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "category", "department"])
        width = max(3, len(str(args.count - 1)))
        for n, row in enumerate(rows[: args.count]):
            writer.writerow([f"t{n:0{width}d}", row["text"], row["category"],
                             department[row["category"]]])  # fmt: skip


if __name__ == "__main__":
    main()
