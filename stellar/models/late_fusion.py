"""Late fusion of per-modality estimators: each member reads one modality (or a set of them) of a multi-modal object,
and the members present for an object are pooled.

:class:`LateFusion` is an :class:`~stellar.models.ensemble.Ensemble` whose members each read one modality, or a
joint set of modalities, of the multi-modal datamodule's per-object arrays (``{spectrum: {...}, sed: {...},
present: {...}, label, <targets>}``): e.g. the MILES kernel ridge on the spectrum, an XGBoost model on the SED
features with the parallax, and a kernel ridge on the spectrum and the SED together. Each member is fitted on the
training objects that have every modality it reads and calibrated on the validation objects that have them
(``calibrate_members``: temperature scaling of its logits, variance scaling of its σ). Per object, over the members
whose modalities are all present:

- classes: the log-linear pool (:func:`~stellar.models.ensemble.log_linear_pool`), ``softmax(sum_m w_m log p_m)``;
- each regression target: the weighted Gaussian product (:func:`~stellar.models.ensemble.gaussian_product`), in the
  learned space (log10 for ``log_targets``), precision-weighted mean and combined variance;

with the weights normalised over the present members, so an object with one modality gets that member's answer.
The weights of each head (the class head and each target) are chosen on the validation part on the simplex grid
of ``weight_step`` (the :class:`~stellar.models.ensemble.Ensemble` machinery with ``weighting="validation"``):
lowest log loss for the class head, lowest MAE of the combined mean for a target. An object with no modality a
member reads gets the training part's class frequencies and target means and spreads; so does, for one head, an
object that none of the members answering that head (members may have different heads) can answer.

With ``cascade`` one member (e.g. an XGBoost model on the SED that needs the spectrum too) also reads, per object, the
predictions of another (``source``, e.g. the spectrum's kernel ridge: log10 Teff, log g, [Fe/H]) and two physical
features made from them with its own fields: log L from V, the parallax and BC_V(Teff), and log g from L, Teff and
the mass guess M = L^0.25 (:mod:`stellar.models.luminosity`); a field ``cascade`` (N, k) beside its modality's
fields. Its training rows get *out-of-sample* source predictions (exact leave-one-out of a kernel ridge, or k-fold
cross-fitting of the source), the other parts the fitted source's; NaN where the source's modality is absent or the
input is bad (a non-positive parallax). See :class:`CascadeMember`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import log_loss_per_row
from stellar.models.ensemble import Ensemble, best_weights, gaussian_product, log_linear_pool
from stellar.models.estimators import log_probs, physical_outputs, read_meta
from stellar.models.luminosity import log_luminosity, logg_from_luminosity
from stellar.utils.numeric import log10_positive

log = logging.getLogger(__name__)


class ModalityMember:
    """An estimator that reads one modality, or a set of modalities, of multi-modal per-object arrays: it is fitted on
    the objects that have all of them and answers for every object (the others get a filler the pool ignores).

    Parameters
    ----------
    model : estimator
        The estimator (``fit``, ``predict_outputs``, ``save``, ``load``) on the fields of those modalities, side by
        side (their field names must differ).
    modality : str or sequence of str
        The modality it reads (``spectrum``, ``sed``…), or the modalities it needs together (``[spectrum, sed]``),
        keys of the arrays and of their ``present`` masks.
    """

    def __init__(self, model: Any, modality: str | Sequence[str]):
        self.model = model
        self.modalities = [str(modality)] if isinstance(modality, str) else [str(m) for m in modality]
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise StellarConfigError(f"a member reads one or more distinct modalities; got {modality!r}")
        #: the modality it reads, or ``a+b`` for a joint member
        self.modality = "+".join(self.modalities)
        self.class_names = list(getattr(model, "class_names", []))
        self.targets = list(getattr(model, "targets", ()))
        self.log_targets = list(getattr(model, "log_targets", ()))
        self.inputs = list(getattr(model, "inputs", ()))

    @property
    def history(self) -> dict[str, dict[str, list[float]]]:
        return dict(getattr(self.model, "history", {}))

    def present(self, arrays: Mapping[str, Any]) -> np.ndarray:
        """(N,) which objects have every modality this member reads."""
        masks = arrays.get("present", {})
        missing = [m for m in self.modalities if m not in masks or m not in arrays]
        if missing:
            raise StellarConfigError(
                f"the data has no modality {missing[0]!r} (present masks {sorted(masks)}); a late-fusion member "
                "reads a multi-modal datamodule's arrays (datamodule=multimodal or miles_paired)"
            )
        return np.logical_and.reduce([np.asarray(masks[m], dtype=bool) for m in self.modalities])

    def part(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The flat arrays of the objects that have the member's modalities: their fields, the labels and the
        targets."""
        keep = self.present(arrays)
        flat: dict[str, np.ndarray] = {}
        for m in self.modalities:
            for k, v in arrays[m].items():
                if k in flat:
                    raise StellarConfigError(
                        f"field {k!r} is in more than one of the modalities {self.modalities}; a joint member reads "
                        "their fields side by side"
                    )
                flat[k] = np.asarray(v)[keep]
        for k, v in arrays.items():
            if k != "present" and k not in self.modalities and not isinstance(v, Mapping):
                flat[k] = np.asarray(v)[keep]
        return flat

    def fit(self, train: Mapping[str, Any], val: Mapping[str, Any] | None = None) -> dict[str, float]:
        part = self.part(val) if val is not None else None
        return dict(self.model.fit(self.part(train), part if part is not None and len(part["label"]) else None))

    def predict_outputs(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The member's outputs for every object: its own where the modality is present; uniform logits, mean 0 and
        log-variance 0 elsewhere (ignored by the pool, which reads the presence masks)."""
        keep = self.present(arrays)
        n = len(keep)
        out = self.model.predict_outputs(self.part(arrays)) if keep.any() else {}
        full: dict[str, np.ndarray] = {}
        if self.class_names:
            full["logits"] = np.zeros((n, len(self.class_names)), np.float32)
        for t in self.targets:
            full[f"{t}_mean"], full[f"{t}_logvar"] = np.zeros(n, np.float32), np.zeros(n, np.float32)
        for k, a in full.items():
            if k in out:
                a[keep] = out[k]
        return full

    def save(self, directory: str | Path, prefix: str = "") -> Path:
        return Path(self.model.save(directory, prefix=prefix))

    def load(self, path: str | Path) -> ModalityMember:
        self.model.load(path)
        return self


#: the cascade settings and their defaults (``LateFusion(cascade=...)``)
CASCADE_DEFAULTS: dict[str, Any] = {
    "member": None,  # the member kind that reads the cascade features
    "source": None,  # the member kind whose predictions it reads
    "targets": None,  # the source's targets fed (learned space: log10 for its log targets); None: all of them
    "physical": True,  # add log L and the physical log g (needs teff among the targets)
    "field": "features",  # the member's field holding V and the parallax
    # datamodule=miles_paired features: U, B, V, I, U-B, B-V, V-I, M_V, parallax, parallax error
    "v_column": 2,  # its column of the V magnitude
    "parallax_column": 8,  # its column of the parallax (mas)
    "mass_exponent": 0.25,  # the mass guess M = L^mass_exponent of the physical log g
    "out_of_sample": "loo",  # training rows: "loo" (exact leave-one-out of a kernel ridge) or "crossfit"
    "crossfit_folds": 5,  # folds of "crossfit"
}


def cascade_spec(cascade: Mapping[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
    """The cascade settings, checked, with their defaults; :class:`StellarConfigError` names a bad key."""
    unknown = sorted(set(cascade) - set(CASCADE_DEFAULTS))
    if unknown:
        raise StellarConfigError(f"cascade.{unknown[0]} is not a cascade setting; known: {sorted(CASCADE_DEFAULTS)}")
    spec = {**CASCADE_DEFAULTS, **dict(cascade)}
    for key in ("member", "source"):
        if spec[key] not in kinds:
            raise StellarConfigError(f"cascade.{key} must name a member kind ({list(kinds)}); got {spec[key]!r}")
    if spec["member"] == spec["source"]:
        raise StellarConfigError(f"cascade.member and cascade.source must differ; both are {spec['member']!r}")
    if spec["out_of_sample"] not in ("loo", "crossfit"):
        raise StellarConfigError(f"cascade.out_of_sample must be 'loo' or 'crossfit'; got {spec['out_of_sample']!r}")
    for key in ("v_column", "parallax_column", "crossfit_folds"):
        if not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 0:
            raise StellarConfigError(f"cascade.{key} must be a non-negative integer; got {spec[key]!r}")
    if spec["crossfit_folds"] < 2:
        raise StellarConfigError(f"cascade.crossfit_folds must be at least 2; got {spec['crossfit_folds']}")
    if not (isinstance(spec["mass_exponent"], (int, float)) and math.isfinite(spec["mass_exponent"])):
        raise StellarConfigError(f"cascade.mass_exponent must be a number; got {spec['mass_exponent']!r}")
    spec["mass_exponent"] = float(spec["mass_exponent"])
    spec["physical"], spec["field"] = bool(spec["physical"]), str(spec["field"])
    if spec["targets"] is not None:
        if isinstance(spec["targets"], str) or not spec["targets"]:
            raise StellarConfigError(f"cascade.targets must be a non-empty list of targets; got {spec['targets']!r}")
        spec["targets"] = [str(t) for t in spec["targets"]]
    return spec


class CascadeMember(ModalityMember):
    """A member that also reads another member's predictions (the ``source``) and physical features made from them.

    Per object the field ``cascade`` holds, in order: the source's prediction of each of ``targets`` in its learned
    space (log10 for its log targets), then with ``physical`` log L (from V and the parallax of the member's
    ``field``, and BC_V at the source's Teff) and the physical log g (M = L^mass_exponent); NaN where the source's
    modalities are absent or the input is bad. The member's estimator reads it beside its own fields (``cascade`` is
    added to its ``inputs``). Fitting: the source must be fitted first (:class:`LateFusion` fits it first); the
    training rows get its out-of-sample predictions (the source's exact leave-one-out,
    :meth:`~stellar.models.ridge.RidgeEstimator.loo_predictions`, or k-fold cross-fitting of a fresh source from
    ``refit``), every other part the fitted source's.

    Parameters
    ----------
    model, modality
        As :class:`ModalityMember`.
    source : ModalityMember
        The member whose predictions are read.
    spec : mapping
        The checked cascade settings (:func:`cascade_spec`).
    refit : callable, optional
        Returns a fresh, unfitted source estimator (``out_of_sample: crossfit``).
    """

    field_name = "cascade"

    def __init__(
        self,
        model: Any,
        modality: str | Sequence[str],
        source: ModalityMember,
        spec: Mapping[str, Any],
        refit: Callable[[int], Any] | None = None,
    ):
        super().__init__(model, modality)
        self.source, self.spec, self.refit = source, dict(spec), refit
        self.cascade_targets = list(spec["targets"] or source.targets)
        missing = [t for t in self.cascade_targets if t not in source.targets]
        if missing:
            raise StellarConfigError(f"cascade.targets {missing} are not targets of the source ({source.targets})")
        if spec["physical"] and "teff" not in self.cascade_targets:
            raise StellarConfigError("cascade.physical needs teff among cascade.targets (the bolometric correction)")
        if self.field_name not in getattr(model, "inputs", []):
            model.inputs = [*getattr(model, "inputs", []), self.field_name]
        self.inputs = list(model.inputs)
        #: the columns of the ``cascade`` field
        self.columns = [*self.cascade_targets, *(["log_l", "logg_phys"] if spec["physical"] else [])]

    def _source_columns(self, arrays: Mapping[str, Any], training: bool) -> np.ndarray:
        """(N, len(targets)) source predictions in the learned space for every object, NaN where it is absent."""
        keep = self.source.present(arrays)
        out = np.full((len(keep), len(self.cascade_targets)), np.nan)
        if not keep.any():
            return out
        part = self.source.part(arrays)
        if training:
            preds = self._out_of_sample(part)
        else:
            raw = self.source.model.predict_outputs(part)
            preds = {t: self._learned(t, raw[f"{t}_mean"]) for t in self.cascade_targets}
        for j, t in enumerate(self.cascade_targets):
            out[keep, j] = preds[t]
        return out

    def _learned(self, t: str, value: np.ndarray) -> np.ndarray:
        return log10_positive(value) if t in self.source.log_targets else np.asarray(value, dtype=np.float64)

    def _out_of_sample(self, part: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The source's out-of-sample predictions (learned space) on its training rows ``part``."""
        if self.spec["out_of_sample"] == "loo":
            loo = getattr(self.source.model, "loo_predictions", None)
            if loo is None:
                raise StellarConfigError(
                    f"cascade.out_of_sample: loo needs a kernel-ridge source; {type(self.source.model).__name__} has "
                    "no exact leave-one-out: use out_of_sample: crossfit"
                )
            return dict(loo(part, self.cascade_targets))
        if self.refit is None:
            raise StellarConfigError("cascade.out_of_sample: crossfit needs the source's estimator factory")
        n, k = len(part["label"]), int(self.spec["crossfit_folds"])
        if n < 2 * k:
            raise StellarDataError(f"cascade: {n} training rows are too few for {k} cross-fitting folds")
        ways = np.random.default_rng(0).permutation(n) % k
        out = {t: np.full(n, np.nan) for t in self.cascade_targets}
        for i in range(k):
            held = ways == i
            model = self.refit(i)
            model.fit({f: np.asarray(v)[~held] for f, v in part.items()}, None)
            raw = model.predict_outputs({f: np.asarray(v)[held] for f, v in part.items()})
            for t in self.cascade_targets:
                out[t][held] = self._learned(t, raw[f"{t}_mean"])
        return out

    def part(self, arrays: Mapping[str, Any], training: bool = False) -> dict[str, np.ndarray]:
        """:meth:`ModalityMember.part` plus the field ``cascade`` (out-of-sample source predictions if ``training``)."""
        flat = super().part(arrays)
        cols = self._source_columns(arrays, training)[self.present(arrays)]
        if self.spec["physical"]:
            log_teff = cols[:, self.cascade_targets.index("teff")]
            if "teff" not in self.source.log_targets:  # the source's Teff in K
                log_teff = log10_positive(log_teff)
            feats = np.asarray(flat.get(self.spec["field"], np.zeros((len(cols), 0))), dtype=np.float64)
            if feats.ndim != 2 or feats.shape[1] <= max(self.spec["v_column"], self.spec["parallax_column"]):
                raise StellarConfigError(
                    f"cascade.field {self.spec['field']!r} of the member must be (N, F) with the columns "
                    f"cascade.v_column {self.spec['v_column']} and cascade.parallax_column "
                    f"{self.spec['parallax_column']}; got shape {feats.shape}"
                )
            log_l = log_luminosity(feats[:, self.spec["v_column"]], feats[:, self.spec["parallax_column"]], log_teff)
            cols = np.column_stack([cols, log_l, logg_from_luminosity(log_l, log_teff, self.spec["mass_exponent"])])
        flat[self.field_name] = cols.astype(np.float32)
        return flat

    def fit(self, train: Mapping[str, Any], val: Mapping[str, Any] | None = None) -> dict[str, float]:
        part = self.part(val) if val is not None else None
        return dict(self.model.fit(self.part(train, training=True),
                                   part if part is not None and len(part["label"]) else None))  # fmt: skip


class LateFusion(Ensemble):
    """Per-modality estimators, calibrated, pooled per object over the modalities present.

    Parameters
    ----------
    members : mapping of str to callable
        Member kinds by name, each an estimator factory (``_partial_: true``) of one modality's fields.
    modalities : mapping of str to str or sequence of str
        The modality each member reads (``{ridge: spectrum, sed: sed}``), or the modalities it needs together
        (``joint: [spectrum, sed]``: it answers only for the objects that have all of them); one entry per member.
    name : str
        Model name.
    class_names : sequence of str, optional
        The classes (the datamodule's), handed to every member.
    seed : int
        Seed handed to every member.
    target_stats : mapping of str to (mean, std), optional
        Learned-space statistics of the targets (the datamodule's), handed to every member.
    calibrate_members : bool
        Calibrate each member on the validation objects that have its modality before pooling.
    weighting : {"equal", "validation"}
        Equal weights, or per head the weights of the simplex grid with the lowest validation loss.
    weight_step : float
        Step of the weight grid, dividing 1.
    weight_margin : float
        With ``weighting="validation"``, keep a head's mixture only if its validation loss beats the best single
        member kind's by more than ``weight_margin`` standard errors of their paired per-object difference, else
        give that kind all the weight (the one-standard-error rule at 1; 0: the lowest loss wins).
    cascade : mapping, optional
        A member (``member``) that also reads another's predictions (``source``) and physical features made from
        them (:class:`CascadeMember`; the settings and defaults in :data:`CASCADE_DEFAULTS`); ``None``: off.
    """

    hparam_keys = (*Ensemble.hparam_keys, "modalities", "prior", "cascade")

    def __init__(
        self,
        members: Mapping[str, Callable[..., Any]],
        modalities: Mapping[str, str | Sequence[str]],
        name: str = "late_fusion",
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
        calibrate_members: bool = True,
        weighting: str = "validation",
        weight_step: float = 0.1,
        weight_margin: float = 0.0,
        cascade: Mapping[str, Any] | None = None,
    ):
        if sorted(modalities or {}) != sorted(members or {}):
            raise StellarConfigError(
                f"modalities must name the modality of every member and no other; members {sorted(members or {})}, "
                f"modalities {dict(modalities or {})}"
            )
        super().__init__(members, None, name, class_names, seed, target_stats, calibrate_members, weighting,
                         weight_step, weight_margin)  # fmt: skip
        self.modalities: dict[str, str | list[str]] = {
            str(k): str(v) if isinstance(v, str) else [str(m) for m in v] for k, v in modalities.items()
        }
        self.models = {key: ModalityMember(m, self.modalities[key.rsplit("_", 1)[0]]) for key, m in self.models.items()}
        #: the checked cascade settings (``None``: off)
        self.cascade: dict[str, Any] | None = None
        if cascade is not None:
            self.cascade = cascade_spec(cascade, list(members))
            src, dst = f"{self.cascade['source']}_0", f"{self.cascade['member']}_0"
            factory, stats = members[self.cascade["source"]], dict(self.target_stats)

            def refit(i: int) -> Any:
                return factory(
                    class_names=list(self.class_names),
                    seed=self.seed,
                    name=f"{self.name}.{src}.crossfit{i}",
                    target_stats={t: stats.get(t, (0.0, 1.0)) for t in self.models[src].targets},
                )

            plain = self.models[dst]
            self.models[dst] = CascadeMember(plain.model, plain.modalities, self.models[src], self.cascade, refit)
            # the source is fitted (and so can answer) before the member that reads it
            self.models = {src: self.models[src], **{k: m for k, m in self.models.items() if k != src}}
        #: the batch fields the model reads, as the fused neural model's: the presence masks, then each modality
        self.inputs = ["present", *dict.fromkeys(m for member in self.models.values() for m in member.modalities)]
        #: the training part's class frequencies and per-target learned-space mean and std: the answer for an
        #: object with no modality a member reads
        self.prior: dict[str, Any] = {}

    def fit(self, train: Mapping[str, Any], val: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Fit, calibrate and weigh the members (:meth:`Ensemble.fit`), after noting the training part's prior."""
        y = np.asarray(train["label"])
        counts = np.bincount(y[y >= 0], minlength=len(self.class_names)) if self.class_names else np.zeros(0)
        self.prior = {"class": ((counts + 1.0) / (counts.sum() + len(counts))).tolist() if len(counts) else []}
        for t in self.targets:
            v = self._learned(t, np.asarray(train[t], dtype=np.float64))
            v = v[np.isfinite(v)]
            self.prior[t] = [float(np.mean(v)), float(np.std(v))] if len(v) else [0.0, 1.0]
        return super().fit(train, val)

    def _calibrate(self, model: Any, val: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """A member's calibrators, on the validation objects that have its modality."""
        return Ensemble._calibrate(model.model, model.part(val))

    def _learned(self, t: str, value: np.ndarray) -> np.ndarray:
        return log10_positive(value) if t in self.log_targets else value

    def _to_learned(self, t: str, mean: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A member's physical mean and log-variance in the learned space (the delta method for log10 targets)."""
        mean, logvar = np.asarray(mean, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
        if t not in self.log_targets:
            return mean, logvar
        safe = np.where(mean > 0, mean, 1.0)
        return self._learned(t, mean), logvar - 2.0 * np.log(safe * math.log(10.0))

    def _pooled(
        self,
        arrays: Mapping[str, Any],
        weights: Mapping[str, Mapping[str, float]] | None = None,
        outputs: Mapping[str, tuple[dict[str, Any], np.ndarray | None]] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
        """Per head, the pooled answer in the learned space: class probabilities and ``{t: (mean, logvar)}``, and
        per head which objects have none of the members that answer it present (NaN there): members may have
        different heads. ``outputs``: the members' calibrated outputs on ``arrays`` where already computed."""
        ws = self.weights if weights is None else weights
        outs = outputs if outputs is not None else {key: self._member_outputs(key, arrays) for key in self.models}
        present = {key: m.present(arrays) for key, m in self.models.items()}
        n = len(next(iter(present.values())))

        def none_of(keys: Sequence[str]) -> np.ndarray:
            return ~np.any(np.stack([present[k] for k in keys]), axis=0) if keys else np.ones(n, bool)

        pooled: dict[str, np.ndarray] = {}
        probs = {k: p for k, (_, p) in outs.items() if p is not None}
        none = {"class": none_of(list(probs))}
        if self.class_names and probs:
            w = ws.get("class")
            pooled["class"] = log_linear_pool(list(probs.values()), None if not w else [w[k] for k in probs],
                                              [present[k] for k in probs])  # fmt: skip
        regs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for t in self.targets:
            keys = [k for k, (o, _) in outs.items() if f"{t}_mean" in o]
            none[t] = none_of(keys)
            learned = [self._to_learned(t, outs[k][0][f"{t}_mean"], outs[k][0][f"{t}_logvar"]) for k in keys]
            w = ws.get(t)
            regs[t] = gaussian_product([m for m, _ in learned], [v for _, v in learned],
                                       None if not w else [w[k] for k in keys], [present[k] for k in keys])  # fmt: skip
        return pooled, regs, none

    def _fit_weights(self, val: Mapping[str, Any]) -> dict[str, dict[str, float]]:
        """Per head, the member weights of the simplex grid with the lowest validation loss of the presence-masked
        pool: log loss of the log-linear pool (class head), MAE of the Gaussian product's mean in the learned space
        (a target), a mixture kept over the best single kind only by ``weight_margin`` standard errors. A head left
        out (equal weights): one with a single member kind, or whose scored validation objects never have two
        member kinds present (nothing there to choose the weights on)."""
        weights: dict[str, dict[str, float]] = {}
        y = np.asarray(val["label"])
        outs = {key: self._member_outputs(key, val) for key in self.models}
        heads = (["class"] if self.class_names else []) + list(self.targets)
        for head in heads:
            keys = [k for k, m in self.models.items() if (m.class_names if head == "class" else head in m.targets)]

            def loss(w: Mapping[str, float], head: str = head) -> np.ndarray:
                # per scored object (the same objects for every w: presence, not the weights, decides which)
                pooled, regs, none = self._pooled(val, {head: w}, outs)
                if head == "class":
                    ok = (y >= 0) & ~none["class"]
                    return log_loss_per_row(pooled["class"][ok], y[ok]) if ok.sum() else np.zeros(0)
                truth = self._learned(head, np.asarray(val[head], dtype=np.float64))
                ok = np.isfinite(truth) & ~none[head]
                return np.abs(regs[head][0][ok] - truth[ok])

            # the weights only matter where two member kinds answer a scored object: without one, any weights give
            # the same loss, and the grid's first row (all weight on the last kind) would be kept as if chosen
            scored = (y >= 0) if head == "class" else np.isfinite(self._learned(head, np.asarray(val[head], float)))
            kinds: dict[str, np.ndarray] = {}
            for k in keys:
                kind = k.rsplit("_", 1)[0]
                kinds[kind] = kinds.get(kind, np.zeros(len(y), bool)) | self.models[k].present(val)
            if len(kinds) > 1 and not (scored & (np.sum(list(kinds.values()), axis=0) >= 2)).any():
                log.info("late fusion: no validation object with %s has two of %s; equal weights", head, keys)
                continue
            chosen = best_weights(keys, self.weight_step, loss, self.weight_margin)
            if chosen is not None:
                weights[head] = chosen
        return weights

    def member_probs(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Class probabilities of each member after its own calibrator, NaN for objects without its modality."""
        out = {}
        for key, p in super().member_probs(arrays).items():
            out[key] = np.where(self.models[key].present(arrays)[:, None], p, np.nan)
        return out

    def predict_outputs(self, arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``logits`` (log of the pooled probabilities) and ``<t>_mean``/``<t>_logvar`` (physical units) of every
        object, pooled over the members whose modality it has; per head, the training prior where none of the
        members that answer that head has its modality."""
        pooled, regs, none = self._pooled(arrays)
        result: dict[str, np.ndarray] = {}
        if self.class_names:
            prior = np.asarray(self.prior.get("class") or np.full(len(self.class_names), 1.0 / len(self.class_names)))
            nc = none["class"]
            p = pooled.get("class", np.full((len(nc), len(self.class_names)), np.nan))
            result["logits"] = log_probs(np.where(nc[:, None], prior[None, :], p))
        for t in self.targets:
            mean, logvar = regs[t]
            mu0, sd0 = self.prior.get(t, (0.0, 1.0))
            mean = np.where(none[t], mu0, mean)
            sigma = np.exp(0.5 * np.where(none[t], 2.0 * np.log(max(sd0, 1e-6)), logvar))
            result[f"{t}_mean"], result[f"{t}_logvar"] = physical_outputs(mean, sigma, t in self.log_targets)
        return result

    def load(self, path: str | Path) -> LateFusion:
        """Load what :meth:`save` wrote, with the saved prior; the saved cascade settings must be this config's."""
        meta = read_meta(path)[1]
        if meta.get("cascade") != self.cascade:
            raise StellarConfigError(f"saved cascade {meta.get('cascade')} differs from this config's {self.cascade}")
        super().load(path)
        self.prior = dict(meta.get("prior", {}))
        return self
