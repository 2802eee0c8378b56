"""``python -m stellar.serving.scoring model=<name>[@<version or alias>] input=<catalogue> output=<folder or file>``
(config ``conf/score.yaml``; also ``python -m stellar.score``): :func:`stellar.pipelines.score.run`, exit status 2
on an error of the input or the arguments (said on stderr).

Today's flags still work and become overrides (:data:`FLAGS`): ``--model M --ref R`` → ``model=M@R``, ``--input`` →
``input=``, ``--output`` → ``output=``, ``--id-column`` → ``id_column=``, ``--chunk-size`` → ``partition_rows=``,
``--root`` → ``registry.root=``. ``model`` is the name of train's config group, which Hydra will not let a command
line set as a value; so an argument ``model=<name>[@ref]`` is read here as ``model_ref=<name>[@ref]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from stellar.errors import StellarError, StellarValueError
from stellar.pipelines.common import CONF_DIR, registry_model_argument
from stellar.pipelines.score import run

#: today's flags and the override each became (``--ref R`` joins ``--model M`` as ``model_ref=M@R``)
FLAGS = {
    "--model": "model_ref",
    "--ref": "@",
    "--input": "input",
    "--output": "output",
    "--id-column": "id_column",
    "--chunk-size": "partition_rows",
    "--root": "registry.root",
}


def flag_overrides(argv: Sequence[str]) -> list[str]:
    """Today's flags (:data:`FLAGS`, also as ``--flag=value``) as Hydra overrides; ``model=<name>[@ref]`` becomes
    ``model_ref=``; other arguments pass unchanged."""
    args: list[str] = []
    for a in argv:
        args += a.split("=", 1) if a.startswith("--") and "=" in a else [a]
    given: dict[str, str] = {}
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a in FLAGS:
            value = next(it, None)
            if value is None:
                raise StellarValueError(f"{a} needs a value; flags: {sorted(FLAGS)}")
            given[a] = value
        else:
            rest.append(a)
    if "--ref" in given:
        if "--model" not in given:
            raise StellarValueError("--ref needs --model (or model=<name>@<ref>)")
        given["--model"] += "@" + given.pop("--ref")
    return [f"{FLAGS[f]}={v}" for f, v in given.items()] + registry_model_argument(rest)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="score")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except StellarError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


def main(argv: Sequence[str] | None = None) -> int:
    """Score with ``argv`` (default: the command line's arguments); returns the exit status."""
    saved = sys.argv
    try:
        sys.argv = [saved[0], *flag_overrides(list(saved[1:] if argv is None else argv))]
        _hydra_main()
    except StellarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
