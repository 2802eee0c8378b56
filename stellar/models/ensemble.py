"""An ensemble of classifier estimators: the mean of their class probabilities, with the model-output contract.

Members are estimator factories (Hydra ``_partial_: true`` configs, e.g. ``sed_xgboost`` and an MLP), each fitted
``copies`` times with seeds ``seed, seed + 1, …`` on the same training part (early stopping and checkpoint choice on
the same validation part). ``predict_outputs`` returns ``logits`` = log of the members' mean probability, so the
pipeline calibrates, scores, saves and serves an ensemble like any single estimator.

Every member saves into the same flat folder under its own prefix (``xgb_0.class.ubj``, ``xgb_0.estimator.json``,
``mlp_0.mlp.pt``…) beside the ensemble's ``estimator.json``, so that the registry, which stores the files of a
checkpoint folder, keeps all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from stellar.errors import StellarConfigError
from stellar.evaluation.calibration import softmax
from stellar.models.estimators import PIPELINE_KEYS, Estimator, log_probs, read_meta, write_meta

log = logging.getLogger(__name__)


class EnsembleClassifier(Estimator):
    """Mean class probabilities of several fitted estimators.

    Parameters
    ----------
    members : mapping of str to callable
        Member kinds by name; each is called as ``factory(class_names=..., seed=..., name=...)`` and must return an
        estimator (``fit``, ``predict_outputs`` with ``logits``, ``save(folder, prefix)``, ``load(json_path)``).
    copies : mapping of str to int, optional
        How many copies of each kind to fit (default 1 each), with seeds ``seed + i``; copy ``i`` of kind ``k``
        is named ``k_i``.
    name : str
        Model name.
    class_names : sequence of str
        The classes (the datamodule's), handed to every member.
    seed : int
        Seed of the first copy of each kind.
    target_stats : mapping, optional
        Ignored: the ensemble predicts classes only.
    """

    hparam_keys = (*PIPELINE_KEYS, "members")
    targets: tuple[str, ...] = ()
    target_stats: Mapping[str, Sequence[float]] = MappingProxyType({})  # classes only

    def __init__(
        self,
        members: Mapping[str, Callable[..., Any]],
        copies: Mapping[str, int] | None = None,
        name: str = "ensemble",
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
    ):
        self.class_names = [str(c) for c in class_names or []]
        if len(self.class_names) < 2:
            raise StellarConfigError(f"EnsembleClassifier needs at least 2 class_names; got {self.class_names}")
        if not members:
            raise StellarConfigError("members must name at least one estimator config")
        copies = dict(copies or {})
        unknown = sorted(set(copies) - set(members))
        if unknown:
            raise StellarConfigError(f"copies names {unknown}, which are not members ({sorted(members)})")
        self.name, self.seed = str(name), int(seed)
        self.models: dict[str, Any] = {}
        for kind, factory in members.items():
            if not callable(factory):
                raise StellarConfigError(f"member {kind!r} must be an estimator factory (_partial_: true)")
            n = int(copies.get(kind, 1))
            if n < 1:
                raise StellarConfigError(f"copies[{kind!r}] must be at least 1; got {n}")
            for i in range(n):
                key = f"{kind}_{i}"
                self.models[key] = factory(class_names=self.class_names, seed=self.seed + i, name=f"{self.name}.{key}")
        inputs = {tuple(getattr(m, "inputs", ())) for m in self.models.values()}
        #: the data fields every member reads (the union, in first-seen order)
        self.inputs = list(dict.fromkeys(k for m in self.models.values() for k in getattr(m, "inputs", ())))
        if len(inputs) > 1:
            log.info("ensemble members read different inputs: %s", sorted(inputs))
        #: per member and booster/head, per data part, per metric: the value at every round or epoch
        self.history: dict[str, dict[str, dict[str, list[float]]]] = {}

    @property
    def members(self) -> list[str]:
        """The fitted copies, ``<kind>_<i>``, in fitting order."""
        return list(self.models)

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Fit every member in turn; returns each member's metrics under ``<part>/<member>.<metric>`` and the
        ensemble's validation log loss and accuracy (``val/class_mlogloss``, ``val/acc``) when ``val`` has labels."""
        metrics: dict[str, float] = {}
        self.history = {}
        for n, (key, model) in enumerate(self.models.items(), start=1):
            for k, v in model.fit(train, val).items():
                part, _, metric = k.partition("/")
                metrics[f"{part}/{key}.{metric}"] = float(v)
            for sub, parts in getattr(model, "history", {}).items():
                self.history[f"{key}.{sub}"] = parts
            log.info("ensemble member %s fitted (%d of %d)", key, n, len(self.models))
        if val is not None and len(val.get("label", ())):
            y = np.asarray(val["label"])
            ok = y >= 0
            if ok.any():
                p = softmax(self.predict_outputs(val)["logits"].astype(np.float64))[ok]
                metrics["val/class_mlogloss"] = float(
                    -np.mean(np.log(np.clip(p[np.arange(ok.sum()), y[ok]], 1e-15, 1)))
                )
                metrics["val/acc"] = float(np.mean(p.argmax(1) == y[ok]))
        return metrics

    def member_probs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's class probabilities (N, C) on ``arrays``, by member name (a subclass may calibrate them)."""
        return {
            key: softmax(np.asarray(model.predict_outputs(arrays)["logits"], dtype=np.float64))
            for key, model in self.models.items()
        }

    def combine(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's class probabilities from :meth:`member_probs`: their mean."""
        return np.mean(np.stack(list(probs.values())), axis=0)

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``logits`` (N, C): the log of :meth:`combine` of the members' class probabilities (their mean)."""
        return {"logits": log_probs(self.combine(self.member_probs(arrays)))}

    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Every member under the prefix ``<prefix><member>.`` and ``<prefix>estimator.json`` in ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files = {key: model.save(d, prefix=f"{prefix}{key}.").name for key, model in self.models.items()}
        return write_meta(d, prefix, {**self.hparams, "type": type(self).__name__, "files": files})

    def load(self, path: str | Path) -> EnsembleClassifier:
        """Load what :meth:`save` wrote (``path``: its JSON file or the folder); members must match the config."""
        meta_path, meta = read_meta(path)
        if list(meta.get("class_names", [])) != self.class_names:
            raise StellarConfigError(f"saved class_names {meta.get('class_names')} differ from {self.class_names}")
        if list(meta.get("members", [])) != list(self.models):
            raise StellarConfigError(
                f"saved members {meta.get('members')} differ from this config's {list(self.models)}"
            )
        for key, model in self.models.items():
            model.load(meta_path.parent / meta["files"][key])
        return self
