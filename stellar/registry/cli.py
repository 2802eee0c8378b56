"""``python -m stellar.registry list|versions|card|show|alias …``: list and manage registered models.

``registry.root=`` or ``--root`` picks the registry; default ``$STELLAR_REGISTRY`` or ``registry``::

    python -m stellar.registry list
    python -m stellar.registry versions spectral_cnn
    python -m stellar.registry card spectral_cnn production
    python -m stellar.registry alias spectral_cnn production 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from stellar.errors import StellarConfigError, StellarDataError, StellarValueError
from stellar.registry.store import DEFAULT_ROOT, LATEST
from stellar.registry.versions import ModelRegistry


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    # --root before or after the command (`--root R list` and `list --root R`); SUPPRESS keeps a subcommand's
    # missing --root from overwriting the one given before it
    root_opt = argparse.ArgumentParser(add_help=False)
    root_opt.add_argument(
        "--root", default=argparse.SUPPRESS, help="registry root (path or fsspec URL); or registry.root=…"
    )
    p = argparse.ArgumentParser(
        prog="python -m stellar.registry", description="List and manage registered models.", parents=[root_opt]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="models with their versions and aliases", parents=[root_opt])
    s = sub.add_parser("versions", help="versions of one model", parents=[root_opt])
    s.add_argument("name")
    s = sub.add_parser("card", help="the model card of one version", parents=[root_opt])
    s.add_argument("name")
    s.add_argument("ref", nargs="?", default=LATEST, help="version (3, v3), alias or 'latest'")
    s = sub.add_parser("show", help="the manifest of one version (JSON)", parents=[root_opt])
    s.add_argument("name")
    s.add_argument("ref", nargs="?", default=LATEST)
    s = sub.add_parser("alias", help="point an alias at a version", parents=[root_opt])
    s.add_argument("name")
    s.add_argument("alias")
    s.add_argument("ref", help="version (3, v3), another alias or 'latest'")
    root = None
    rest = []
    for a in argv:  # the Hydra-style override that train.py and serve.py take
        if a.startswith("registry.root="):
            root = a.split("=", 1)[1]
        else:
            rest.append(a)
    ns = p.parse_args(rest)
    ns.root = getattr(ns, "root", None) or root or os.environ.get("STELLAR_REGISTRY") or DEFAULT_ROOT
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stellar.registry``; returns the exit status."""
    ns = _parse(sys.argv[1:] if argv is None else argv)
    reg = ModelRegistry(ns.root)
    try:
        if ns.cmd == "list":
            models = reg.models()
            if not models:
                print(f"no models in {reg.root}")
            for m in models:
                al = ", ".join(f"{a}→v{v}" for a, v in reg.aliases(m).items()) or "-"
                print(f"{m}\tversions {reg.versions(m)}\taliases {al}")
        elif ns.cmd == "versions":
            aliases = reg.aliases(ns.name)
            for v in reg.versions(ns.name):
                mv = reg.get(ns.name, v)
                tags = [a for a, av in aliases.items() if av == v]
                print(f"v{v}\t{mv.manifest.get('created')}\t{','.join(tags)}")
        elif ns.cmd == "card":
            print(reg.get(ns.name, ns.ref).card, end="")
        elif ns.cmd == "show":
            print(json.dumps(reg.get(ns.name, ns.ref).manifest, indent=2))
        elif ns.cmd == "alias":
            v = reg.set_alias(ns.name, ns.alias, ns.ref)
            print(f"{ns.name}/{ns.alias} -> v{v}")
    except (StellarValueError, StellarDataError, StellarConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
