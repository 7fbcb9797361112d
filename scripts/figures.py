"""Regenerate the lecture's figures from real trainings on Fashion-MNIST, one study at a time.

    python scripts/figures.py --out docs/figures                 # every study
    python scripts/figures.py --out docs/figures --only decay    # one (or several) of them
    python scripts/figures.py --quick --out /tmp/f --work /tmp/w # each in about a minute

Each study writes NAME.png, NAME.md (its table, printed) and NAME.json to --out; its run folders
go to --work, and a study run again skips the runs it already finished (it resumes).
Fashion-MNIST must be installed (Debian's dataset-fashion-mnist, or `data_dir`).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

STUDIES = ("lr", "decay", "grid", "transfer", "ensemble", "largebatch", "scaling")
MODULES = {"ensemble": "ensembles"}  # study name -> module in scripts/studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--work", default="runs/figures", help="run folders behind the figures")
    parser.add_argument("--only", nargs="+", choices=STUDIES, default=list(STUDIES))
    parser.add_argument("--quick", action="store_true", help="tiny versions, to try the code")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        print(f"study: {name}", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"studies.{MODULES.get(name, name)}")
        module.run(out, work / name, quick=args.quick)
        print(f"study {name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
