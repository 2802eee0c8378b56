"""``python -m stellar.store <root> [--csv] [--dataset NAME]``: what a dataset store holds.

Without ``--csv``: one block per dataset (modality, rows by survey, fields with shape and dtype, grid, meta
columns, provenance). With ``--csv``: the metadata tables as CSV (``dataset`` first, then ``object_id``,
``survey`` and every survey's own columns, e.g. ``class``, ``subclass``, ``z`` for SDSS spectra).
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from stellar.data.store import DatasetStore, summarize
from stellar.errors import StellarValueError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stellar.store", description=__doc__.splitlines()[0])
    p.add_argument("root", help="store root: a folder or an fsspec URL")
    p.add_argument("--csv", action="store_true", help="print the metadata table(s) as CSV")
    p.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    args = p.parse_args(argv)
    store = DatasetStore(args.root)
    names = store.list()
    if args.dataset:
        unknown = sorted(set(args.dataset) - set(names))
        if unknown:
            raise StellarValueError(f"--dataset {unknown} not in {args.root!r}; it has {names}")
        names = [n for n in names if n in args.dataset]
    if args.csv:
        tables = [store.open(n).meta.assign(dataset=n) for n in names]
        df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["dataset", "object_id"])
        first = [c for c in ("dataset", "object_id", "survey") if c in df.columns]
        df[first + [c for c in df.columns if c not in first]].to_csv(sys.stdout, index=False)
        return 0
    infos = [s for s in summarize(store) if s["name"] in names]
    print(f"{args.root}: {len(infos)} dataset(s)")
    for s in infos:
        print(f"\n{s['name']}  modality={s['modality']}  rows={s['rows']}  surveys={s['surveys']}")
        for f, d in s["fields"].items():
            print(f"  field {f:14s} {d['dtype']:10s} {tuple(d['shape'])}  [{s['units'].get(f, '')}]")
        for g, shape in s["grid"].items():
            print(f"  grid  {g:14s} {tuple(shape)}")
        print(f"  meta  {', '.join(s['meta_columns'])}")
        print(f"  provenance {json.dumps(s['provenance'], default=str)[:300]}")
        print(f"  created {s['created']}  content_hash {str(s['content_hash'])[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
