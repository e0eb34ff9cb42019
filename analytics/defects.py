"""Defect prediction from process parameters: per asset kind, the calibrated chance of a defect per window.

Windowed process features -> gradient-boosted trees -> sigmoid calibration on time-ordered folds -> new runs.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.dataset import NS, AssetFrame, DataError, load_sim_dir
from analytics.features import MIN_VALID, Features, FeatureSpec, compute, is_counter
from analytics.versions import library_versions, major_minor

FORMAT = 1
WINDOW_S = 600.0
#: Window features of every process signal: level and spread from ``features.compute``, extremes added here.
SHAPE = ("mean", "std")
EXTREMES = ("min", "max")
#: Statistics a saved model's feature names may use (anything else is refused on load).
STATS = (*SHAPE, *EXTREMES, "rate", "share")
MIN_POSITIVES = 20  # positive training windows needed to fit a kind
MIN_MODE_POSITIVES = 50  # ... and to fit a separate model for one defect mode
FOLDS = 5
RELIABILITY_BINS = 10
RESET_PER_DAY = 1 / 7  # a counter reset this often is a meter of use (tool life), whose level is a feature
IMPORTANCE_ROWS = 3000
IMPORTANCE_REPEATS = 2
#: Any plant: a signal whose name contains one of these counts rejects and is an outcome too.
OUTCOME_WORDS = ("scrap", "reject", "fail_count", "defect")


class DefectModelError(ValueError):
    """Training data or a saved model that cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class DefectRecord:
    """One process-caused quality defect of the ground truth: ``mode`` is the defect type."""

    asset: str
    ts_ns: int
    mode: str
    cause: str


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Windows whose predicted probability is in [lo, hi): their mean prediction and observed defect rate."""

    lo: float
    hi: float
    n: int
    predicted: float
    observed: float


@dataclass(frozen=True)
class DefectResult:
    """Held-out scores of one asset kind; ``threshold`` was chosen on training data (best F1 out of fold)."""

    kind: str
    windows: int
    positives: int
    auc: float
    precision: float
    recall: float
    threshold: float
    brier: float
    brier_base_rate: float  # Brier score of always predicting the training base rate
    ece: float
    bins: tuple[ReliabilityBin, ...] = ()
    top: tuple[tuple[str, float], ...] = ()  # (signal, training log-loss increase when it is permuted)
    modes: tuple[tuple[str, int, float], ...] = ()  # (mode, positives, AUC of its own model or the any-model)
    defects: int = 0  # defects in the test runs of this kind
    unscored: int = 0  # ... of which in windows without enough valid running data (not scored)
    train_windows: int = 0
    train_positives: int = 0
    note: str = ""

    def line(self) -> str:
        if self.note:
            return f"defects {self.kind}: {self.note}"
        return (
            f"defects {self.kind}: windows {self.windows} positives {self.positives} auc {self.auc:.3f} "
            f"precision {self.precision:.2f} recall {self.recall:.2f} "
            f"brier {self.brier:.4f} ece {self.ece:.4f}"
        )

    def details(self) -> list[str]:
        """The figures behind ``line``: threshold, reference Brier, reliability bins, parameters, modes."""
        if self.note:
            return []
        out = [
            f"  threshold {self.threshold:.3f} (max F1 out of fold on {self.train_windows} training windows, "
            f"{self.train_positives} positive); brier of the base rate {self.brier_base_rate:.4f}; "
            f"defects {self.defects}, in unscored windows {self.unscored}"
        ]
        out.append("  top parameters: " + ", ".join(f"{s} {v:.3f}" for s, v in self.top))
        for m, n, auc in self.modes:
            out.append(f"  mode {m}: positives {n} auc {auc:.3f}")
        out += [
            f"  p in [{b.lo:.1f}, {b.hi:.1f}): windows {b.n} "
            f"predicted {b.predicted:.4f} observed {b.observed:.4f}"
            for b in self.bins
        ]
        return out


# -- labels -----------------------------------------------------------------------------------------------
def read_defects(run_dir: Path) -> list[DefectRecord]:
    """The process-caused defects (``event == "defect"``) of a run's ``ground_truth.parquet``, by time."""
    run_dir = Path(run_dir)
    path = run_dir / "ground_truth.parquet"
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        path = run_dir / json.loads(manifest.read_text()).get("ground_truth", path.name)
    if path.suffix != ".parquet" or not path.exists():
        raise DataError(f"{path}: no Parquet ground truth (defects are read from ground_truth.parquet)")
    try:
        t = pq.read_table(path, columns=["ts", "asset", "event", "mode", "cause"])
    except (pa.ArrowInvalid, KeyError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as the ground truth: {exc}") from exc
    ev = np.asarray(t["event"].to_pylist(), dtype=object)
    keep = np.flatnonzero(ev == "defect")
    ts = t["ts"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()[keep]
    cols = {c: [t[c][int(i)].as_py() for i in keep] for c in ("asset", "mode", "cause")}
    out = [
        DefectRecord(str(a), int(s), str(m), str(c or ""))
        for a, s, m, c in zip(cols["asset"], ts, cols["mode"], cols["cause"], strict=True)
    ]
    return sorted(out, key=lambda r: (r.ts_ns, r.asset))


def defect_labels(t_ns: np.ndarray, window_ns: int, defect_times: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per window ending at ``t_ns``: True if a defect time falls in ``(end - window_ns, end]``."""
    d = np.sort(np.asarray(defect_times, dtype=np.int64))
    t = np.asarray(t_ns, dtype=np.int64)
    return np.searchsorted(d, t, side="right") > np.searchsorted(d, t - int(window_ns), side="right")


def defect_counts(t_ns: np.ndarray, window_ns: int, defect_times: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per window ending at ``t_ns``: how many defect times fall in ``(end - window_ns, end]``."""
    d = np.sort(np.asarray(defect_times, dtype=np.int64))
    t = np.asarray(t_ns, dtype=np.int64)
    return np.searchsorted(d, t, side="right") - np.searchsorted(d, t - int(window_ns), side="right")


# -- features ---------------------------------------------------------------------------------------------
def outcome_signals(kind: str, names: Iterable[str], extra: Iterable[str] = ()) -> set[str]:
    """The signals of ``names`` that are outcomes (product measurements, reject counts), never features."""
    del kind  # outcomes are named by the caller per kind (a plant's own product measurements)
    listed = set(extra)
    return {n for n in names if n in listed or any(w in n.lower() for w in OUTCOME_WORDS)}


def resets_per_day(v: np.ndarray, step_s: float) -> float:
    """How often a counter-like signal drops back (a tool-life meter does at each tool change)."""
    f = v[np.isfinite(v)]
    days = len(v) * step_s / 86400.0
    return float(np.sum(np.diff(f) < 0)) / days if days > 0 and len(f) > 1 else 0.0


def use_meters(frame: AssetFrame, exclude: Iterable[str] = ()) -> set[str]:
    """Counter-like signals reset at least weekly: their level (not only their rate) is a feature."""
    skip = set(exclude)
    return {
        n
        for n, v in zip(frame.names, frame.values, strict=True)
        if n not in skip and is_counter(v) and resets_per_day(v, frame.step_s) >= RESET_PER_DAY
    }


def window_features(
    frame: AssetFrame, window_s: float = WINDOW_S, exclude: Iterable[str] = (), meters: Iterable[str] = ()
) -> Features:
    """Mean and std (or rate, for counters) per signal from ``features.compute``, plus each window's min and
    max of the analogue signals and of the use meters; ``exclude`` signals are left out altogether."""
    skip = set(exclude)
    keep = [j for j, n in enumerate(frame.names) if n not in skip]
    names = [frame.names[j] for j in keep]
    values = frame.values[keep] if keep else np.zeros((0, len(frame.ts_ns)))
    sub = AssetFrame(
        frame.asset,
        frame.kind,
        frame.step_s,
        frame.ts_ns,
        names,
        [frame.units[j] for j in keep],
        values,
        frame.running,
    )
    f = compute(sub, FeatureSpec(window_s=window_s, shape=SHAPE))
    w = max(2, round(window_s / frame.step_s))
    win_ns = int(w * frame.step_s * NS)
    starts = np.searchsorted(frame.ts_ns, f.t_ns - win_ns)
    idx = starts[:, None] + np.arange(w)
    meter = set(meters)
    wanted = [j for j, n in enumerate(names) if f"{n}:rate" not in f.names or n in meter]
    cols, new_names, new_sig = [], [], []
    if len(wanted) and len(idx):
        run = frame.running[idx] if frame.running is not None else np.ones(idx.shape, bool)
        x = values[wanted][:, idx]  # (signals, windows, samples)
        x = np.where(run[None], x, np.nan)
        ok = np.mean(np.isfinite(x), axis=2) >= MIN_VALID
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanmin(x, axis=2), np.nanmax(x, axis=2)
        for k, j in enumerate(wanted):
            for stat, arr in (("min", lo[k]), ("max", hi[k])):
                cols.append(np.where(ok[k], arr, np.nan))
                new_names.append(f"{names[j]}:{stat}")
                new_sig.append(names[j])
    elif len(wanted):
        for j in wanted:
            for stat in EXTREMES:
                cols.append(np.zeros(0))
                new_names.append(f"{names[j]}:{stat}")
                new_sig.append(names[j])
    X = np.column_stack([f.X, *cols]) if cols else f.X
    return Features(f.asset, f.t_ns, f.names + new_names, f.signal_of + new_sig, X, f.running_s, f.valid)


# -- the model --------------------------------------------------------------------------------------------
def base_estimator(name: str, random_state: int = 0, balanced: bool = False) -> Any:
    """``hgb``: gradient-boosted trees (NaN-aware); ``logistic``: median-imputed, scaled logistic regression.

    ``balanced`` weights the classes inversely to their frequency (the calibration maps the scores back
    to probabilities either way); it makes HistGradientBoosting several times slower to fit.
    """
    cw = "balanced" if balanced else None
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            class_weight=cw,
            early_stopping=False,
            random_state=random_state,
        )
    if name == "logistic":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=1.0, class_weight=cw, max_iter=2000),
        )
    raise ValueError(f"unknown estimator {name!r} (hgb or logistic)")


def time_folds(y: np.ndarray, folds: int = FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Contiguous, unshuffled folds of the time-ordered training rows; fewer folds if one would lack a
    defect (each held-out fold and each training part needs both classes)."""
    n = len(y)
    for k in range(folds, 1, -1):
        bounds = np.linspace(0, n, k + 1).astype(int)
        splits = []
        for a, b in itertools.pairwise(bounds):
            test = np.arange(a, b)
            train = np.concatenate([np.arange(0, a), np.arange(b, n)])
            splits.append((train, test))
        if all(y[te].any() and (~y[te]).any() and y[tr].any() and (~y[tr]).any() for tr, te in splits):
            return splits
    raise DefectModelError(
        f"the {int(y.sum())} positive training windows do not spread over two time-ordered folds: "
        "calibration needs defects in more than one stretch of the training data; give more runs or days"
    )


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold maximising F1 of ``p >= threshold`` against ``y``."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, thr = precision_recall_curve(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)[:-1]
    return float(thr[int(np.argmax(f1))]) if len(thr) else 0.5


def reliability(
    y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS
) -> tuple[list[ReliabilityBin], float]:
    """Equal-width probability bins (mean predicted, observed rate) and the expected calibration error:
    the window-weighted mean of |predicted - observed| over the bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    k = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    n = np.bincount(k, minlength=bins)
    sp = np.bincount(k, weights=p, minlength=bins)
    sy = np.bincount(k, weights=y.astype(float), minlength=bins)
    out = [
        ReliabilityBin(float(edges[i]), float(edges[i + 1]), int(n[i]), sp[i] / n[i], sy[i] / n[i])
        for i in range(bins)
        if n[i]
    ]
    ece = float(np.sum(np.abs(sp - sy)) / max(len(p), 1))
    return out, ece


def _check_labels(frame: AssetFrame, feats: Features, lab: Any, window_ns: int) -> tuple[np.ndarray, list]:
    """(any-defect label per window, the frame's defect records or [] when labels are given as booleans)."""
    if isinstance(lab, np.ndarray) and lab.dtype == bool:
        if lab.shape != feats.t_ns.shape:
            raise DefectModelError(
                f"{frame.asset}: {lab.shape[0]} labels for {len(feats.t_ns)} windows of {window_ns / NS:g} s"
            )
        return lab, []
    recs = [r for r in lab if r.asset == frame.asset]
    return defect_labels(feats.t_ns, window_ns, [r.ts_ns for r in recs]), recs


@dataclass
class DefectModel:
    """Probability that a window of one asset kind (or asset) produces a defect, from its process features.

    HistGradientBoostingClassifier (unweighted) wrapped in ``CalibratedClassifierCV`` (sigmoid, on
    contiguous unshuffled time folds); per defect mode too when it has enough positive windows.
    """

    kind: str
    window_s: float = WINDOW_S
    outcomes: tuple[str, ...] = ()  # outcome signals of this kind (besides names with OUTCOME_WORDS)
    estimator_name: str = "hgb"
    balanced: bool = False
    method: str = "sigmoid"
    folds: int = FOLDS
    random_state: int = 0
    per_mode: bool = True
    n_threads: int | None = 1  # OpenMP threads of the trees; None = all (small fits are faster on one)
    estimator: Any = None
    mode_estimators: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    signal_of: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    meters: list[str] = field(default_factory=list)
    threshold: float = 0.5
    reference: np.ndarray = field(default_factory=lambda: np.zeros(0))  # typical defect-free feature values
    importance: list[tuple[str, float]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def window_ns(self, frame: AssetFrame) -> int:
        """The window actually used on ``frame``: a whole number of its steps (at least two)."""
        return int(max(2, round(self.window_s / frame.step_s)) * frame.step_s * NS)

    def _threads(self) -> Any:
        """Limit OpenMP threads: HistGradientBoosting's busy-waiting threads make small fits several times
        slower on a machine shared with other work."""
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.n_threads, user_api="openmp")

    def _matches(self, frame: AssetFrame) -> bool:
        return self.kind in (frame.kind, frame.asset)

    # -- features
    def window_features(self, frame: AssetFrame) -> Features:
        """The frame's windows with this model's features (the model must be fitted, or inside ``fit``)."""
        return window_features(frame, self.window_s, self.excluded, self.meters)

    def _matrix(self, feats: Features) -> np.ndarray:
        """``feats`` in this model's feature order; a feature a frame lacks is NaN, a missing signal refused."""
        have = {n: j for j, n in enumerate(feats.names)}
        present = set(feats.signal_of)
        missing = sorted(
            {s for n, s in zip(self.features, self.signal_of, strict=True) if s and s not in present}
        )
        if missing:
            raise DefectModelError(
                f"{feats.asset}: the {self.kind} defect model needs signal(s) {', '.join(missing)}, "
                "which this asset does not have; rename the plant's signals to these or train on this asset"
            )
        X = np.full((len(feats.t_ns), len(self.features)), np.nan)
        for k, n in enumerate(self.features):
            if n in have:
                X[:, k] = feats.X[:, have[n]]
        return X

    def _proba(self, est: Any, X: np.ndarray) -> np.ndarray:
        with self._threads():
            return est.predict_proba(X)[:, 1]

    # -- training
    def fit(
        self,
        frames: Sequence[AssetFrame],
        labels: Sequence[np.ndarray | Sequence[DefectRecord]],
        seeds: Sequence[int] = (),
        progress: Callable[[str], None] | None = None,
    ) -> DefectModel:
        """Fit on the time-ordered windows of ``frames``; ``labels[i]`` is frame i's defects (DefectRecords,
        possibly of several assets) or a boolean per window of ``window_features``. ``seeds`` are recorded."""
        with self._threads():
            return self._fit(frames, labels, seeds, progress)

    def _fit(
        self,
        frames: Sequence[AssetFrame],
        labels: Sequence[np.ndarray | Sequence[DefectRecord]],
        seeds: Sequence[int],
        progress: Callable[[str], None] | None,
    ) -> DefectModel:
        from sklearn.calibration import CalibratedClassifierCV

        if len(frames) != len(labels):
            raise DefectModelError(f"{len(frames)} frames but {len(labels)} label sets")
        if not frames:
            raise DefectModelError(f"no training frames for {self.kind}")
        wrong = [f.asset for f in frames if not self._matches(f)]
        if wrong:
            raise DefectModelError(f"frames {', '.join(wrong)} are not of kind (or asset) {self.kind}")
        excluded: set[str] = set()
        meters: set[str] = set()
        for f in frames:
            out = outcome_signals(f.kind, f.names, self.outcomes)
            excluded |= out
            meters |= use_meters(f, out)
        self.excluded, self.meters = sorted(excluded), sorted(meters)
        feats = [self.window_features(f) for f in frames]
        names: list[str] = []
        sig: dict[str, str] = {}
        for ft in feats:
            for n, s in zip(ft.names, ft.signal_of, strict=True):
                if n not in sig:
                    names.append(n)
                    sig[n] = s
        self.features, self.signal_of = names, [sig[n] for n in names]
        rows, ys, modes = [], [], []
        for frame, ft, lab in zip(frames, feats, labels, strict=True):
            y, recs = _check_labels(frame, ft, lab, self.window_ns(frame))
            ok = ft.valid
            rows.append(self._matrix(ft)[ok])
            ys.append(y[ok])
            per: dict[str, np.ndarray] = {}
            for m in sorted({r.mode for r in recs}):
                per[m] = defect_labels(
                    ft.t_ns, self.window_ns(frame), [r.ts_ns for r in recs if r.mode == m]
                )[ok]
            modes.append((int(ok.sum()), per))
        X = np.vstack(rows)
        y = np.concatenate(ys)
        pos = int(y.sum())
        if pos < MIN_POSITIVES:
            raise DefectModelError(
                f"{self.kind}: {pos} of {len(y)} scored training windows hold a defect; at least "
                f"{MIN_POSITIVES} are needed to learn and calibrate a defect probability (more runs or days)"
            )
        if pos == len(y):
            raise DefectModelError(
                f"{self.kind}: every training window holds a defect; nothing to tell apart"
            )
        splits = time_folds(y, self.folds)
        cal = CalibratedClassifierCV(
            base_estimator(self.estimator_name, self.random_state, self.balanced),
            method=self.method,
            cv=splits,
        )
        if progress:
            progress(f"{self.kind}: fitting on {len(y)} windows, {pos} with a defect")
        cal.fit(X, y)
        self.estimator = cal
        # out-of-fold probabilities: each fold scored by the member fitted without it
        oof = np.empty(len(y))
        for member, (_, te) in zip(cal.calibrated_classifiers_, splits, strict=True):
            oof[te] = self._proba(member, X[te])
        self.threshold = best_f1_threshold(y, oof)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(X[~y], axis=0) if (~y).any() else np.full(X.shape[1], np.nan)
        self.reference = ref
        self.mode_estimators = {}
        mode_pos: dict[str, int] = {}
        all_modes = sorted({m for _, per in modes for m in per})
        for m in all_modes:
            ym = np.concatenate([per.get(m, np.zeros(n, bool)) for n, per in modes])
            mode_pos[m] = int(ym.sum())
            if not self.per_mode or len(all_modes) < 2 or ym.sum() < MIN_MODE_POSITIVES:
                continue
            try:
                msplits = time_folds(ym, self.folds)
            except DefectModelError:
                continue
            if progress:
                progress(f"{self.kind}: fitting mode {m} ({int(ym.sum())} positive windows)")
            mc = CalibratedClassifierCV(
                base_estimator(self.estimator_name, self.random_state, self.balanced),
                method=self.method,
                cv=msplits,
            )
            self.mode_estimators[m] = mc.fit(X, ym)
        self.importance = self._permutation_importance(X, y)
        from sklearn.metrics import brier_score_loss, roc_auc_score

        self.metadata = {
            "format": FORMAT,
            "kind": self.kind,
            "window_s": self.window_s,
            "features": list(self.features),
            "signal_of": list(self.signal_of),
            "excluded_outcomes": self.excluded,
            "use_meters": self.meters,
            "estimator": self.estimator_name,
            "class_weight": "balanced" if self.balanced else "none",
            "estimator_params": {
                k: v
                for k, v in cal.estimator.get_params().items()
                if isinstance(v, int | float | str | None) and not k.endswith("memory")
            },
            "calibration": {"method": self.method, "folds": len(splits), "cv": "contiguous time-ordered"},
            "threshold": self.threshold,
            "threshold_rule": "max F1 of out-of-fold calibrated probabilities on the training windows",
            "libraries": library_versions("scipy"),
            "training": {
                "seeds": [int(s) for s in seeds],
                "assets": sorted({f.asset for f in frames}),
                "frames": len(frames),
                "windows": len(y),
                "positives": pos,
                "mode_positives": mode_pos,
                "modes_modelled": sorted(self.mode_estimators),
                "oof_auc": float(roc_auc_score(y, oof)),
                "oof_brier": float(brier_score_loss(y, oof)),
            },
            "importance": [[s, v] for s, v in self.importance],
        }
        return self

    def _permutation_importance(self, X: np.ndarray, y: np.ndarray) -> list[tuple[str, float]]:
        """Increase of the training log loss when all features of one signal are permuted together (mean of
        IMPORTANCE_REPEATS), on at most IMPORTANCE_ROWS rows with every defect window kept; largest first."""
        from sklearn.metrics import log_loss

        rng = np.random.default_rng(self.random_state)
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        if len(y) > IMPORTANCE_ROWS:
            take = max(IMPORTANCE_ROWS - len(pos), min(len(neg), IMPORTANCE_ROWS // 2))
            neg = rng.choice(neg, size=min(take, len(neg)), replace=False)
        rows = np.sort(np.concatenate([pos, neg]))
        Xs, ys = X[rows], y[rows]
        # positives are kept whole and negatives sampled: weight negatives back to the training base rate
        w = np.where(ys, 1.0, (~y).sum() / max((~ys).sum(), 1))
        base = log_loss(ys, self._proba(self.estimator, Xs), sample_weight=w, labels=[False, True])
        sig = np.asarray(self.signal_of)
        out = []
        for s in sorted(set(self.signal_of)):
            cols = np.flatnonzero(sig == s)
            batch = []
            for _ in range(IMPORTANCE_REPEATS):
                Xp = Xs.copy()
                Xp[:, cols] = Xs[rng.permutation(len(ys))][:, cols]
                batch.append(Xp)
            p = self._proba(self.estimator, np.vstack(batch)).reshape(IMPORTANCE_REPEATS, len(ys))
            loss = [log_loss(ys, pr, sample_weight=w, labels=[False, True]) for pr in p]
            out.append((s or "running", float(np.mean(loss) - base)))
        return sorted(out, key=lambda t: -t[1])

    # -- scoring
    def _require(self) -> Any:
        if self.estimator is None:
            raise DefectModelError(f"the {self.kind} defect model is not fitted: call fit() or load()")
        return self.estimator

    def _as_features(self, data: Features | AssetFrame) -> Features:
        if isinstance(data, AssetFrame):
            if not self._matches(data):
                raise DefectModelError(f"{data.asset} is a {data.kind}, not a {self.kind}")
            return self.window_features(data)
        return data

    def predict_proba(self, data: Features | AssetFrame) -> np.ndarray:
        """Calibrated probability per window that it produces a defect (any mode); NaN where not scored."""
        est = self._require()
        feats = self._as_features(data)
        X = self._matrix(feats)
        p = np.full(len(X), np.nan)
        ok = np.asarray(feats.valid, bool)
        if ok.any():
            p[ok] = self._proba(est, X[ok])
        return p

    def predict_mode_proba(self, data: Features | AssetFrame) -> dict[str, np.ndarray]:
        """Per defect mode with its own model: calibrated probability per window (NaN where not scored)."""
        self._require()
        feats = self._as_features(data)
        X = self._matrix(feats)
        ok = np.asarray(feats.valid, bool)
        out = {}
        for m, est in self.mode_estimators.items():
            p = np.full(len(X), np.nan)
            if ok.any():
                p[ok] = self._proba(est, X[ok])
            out[m] = p
        return out

    def explain(
        self, data: Features | AssetFrame, rows: Sequence[int], top: int = 3
    ) -> list[list[tuple[str, float]]]:
        """Why each of ``rows`` scores as it does: per signal, how much the probability falls when that
        signal's features are set to their typical defect-free training values; the ``top`` largest."""
        est = self._require()
        feats = self._as_features(data)
        X = self._matrix(feats)[np.asarray(rows, dtype=int)]
        if not len(X):
            return []
        p0 = self._proba(est, X)
        sig = np.asarray(self.signal_of)
        signals = [s for s in sorted(set(self.signal_of)) if s]
        batch = np.repeat(X[None], len(signals), axis=0)
        for k, s in enumerate(signals):
            cols = np.flatnonzero(sig == s)
            batch[k][:, cols] = self.reference[cols]
        p = self._proba(est, batch.reshape(-1, X.shape[1])).reshape(len(signals), len(X))
        drop = p0[None] - p
        out = []
        for i in range(len(X)):
            order = np.argsort(-drop[:, i], kind="stable")[:top]
            out.append([(signals[k], float(drop[k, i])) for k in order])
        return out

    # -- persistence
    def save(self, path: str | Path) -> Path:
        """Save to a folder: ``model.joblib`` (estimators, feature list, reference) and ``metadata.json``."""
        import joblib

        self._require()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        bundle = {
            "estimator": self.estimator,
            "mode_estimators": self.mode_estimators,
            "features": list(self.features),
            "reference": self.reference,
        }
        joblib.dump(bundle, path / "model.joblib")
        meta = dict(self.metadata, threshold=self.threshold)
        (path / "metadata.json").write_text(
            json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> DefectModel:
        """Load a saved model; DefectModelError if its feature list is not what its estimator was fitted on
        (or not features this code computes), or its scikit-learn major.minor differs. Only load models you
        trust (joblib is pickle)."""
        import joblib
        import sklearn

        path = Path(path)
        meta_path = path / "metadata.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DefectModelError(f"{meta_path}: cannot read the model metadata ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise DefectModelError(
                f"{path.name}: model format {meta.get('format')}, this code reads {FORMAT}"
            )
        want = major_minor(sklearn.__version__)
        have = major_minor(meta.get("libraries", {}).get("scikit-learn", "unknown"))
        if have != want:
            raise DefectModelError(
                f"{path.name}: the model was saved with scikit-learn {have}, "
                f"this is scikit-learn {want}; retrain it"
            )
        feats = meta.get("features")
        sig = meta.get("signal_of")
        if not isinstance(feats, list) or not isinstance(sig, list) or len(feats) != len(sig) or not feats:
            raise DefectModelError(
                f"{path.name}: metadata.json has no usable feature list; retrain the model"
            )
        unknown = [n for n in feats if not isinstance(n, str) or n.rsplit(":", 1)[-1] not in STATS]
        if unknown:
            raise DefectModelError(
                f"{path.name}: features {unknown[:5]} are not features this code computes "
                f"(signal:{'|'.join(STATS)}); retrain the model"
            )
        bundle = joblib.load(path / "model.joblib")
        if list(bundle.get("features", [])) != feats:
            saved = list(bundle.get("features", []))
            gone = [f for f in saved if f not in feats]
            extra = [f for f in feats if f not in saved]
            detail = (
                f"missing {gone}, unknown {extra}" if gone or extra else "the same names in another order"
            )
            raise DefectModelError(
                f"{path.name}: metadata.json's feature list differs from the one the estimator was fitted on "
                f"({detail}); retrain the model"
            )
        est = bundle["estimator"]
        n_in = getattr(est, "n_features_in_", len(feats))
        if n_in != len(feats):
            raise DefectModelError(
                f"{path.name}: the estimator takes {n_in} features, the list has {len(feats)}"
            )
        return cls(
            kind=str(meta["kind"]),
            window_s=float(meta["window_s"]),
            estimator_name=str(meta.get("estimator", "hgb")),
            balanced=meta.get("class_weight") == "balanced",
            method=str(meta.get("calibration", {}).get("method", "sigmoid")),
            estimator=est,
            mode_estimators=dict(bundle.get("mode_estimators", {})),
            features=list(feats),
            signal_of=[str(s) for s in sig],
            excluded=list(meta.get("excluded_outcomes", [])),
            meters=list(meta.get("use_meters", [])),
            threshold=float(meta.get("threshold", 0.5)),
            reference=np.asarray(bundle.get("reference", np.full(len(feats), np.nan)), dtype=float),
            importance=[(str(s), float(v)) for s, v in meta.get("importance", [])],
            metadata=meta,
        )


# -- evaluation -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Run:
    seed: int | None
    frames: dict[str, list[AssetFrame]]  # kind -> frames
    defects: list[DefectRecord]


def _read_run(run_dir: Path, kinds: Iterable[str] | None) -> _Run:
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    wanted = set(kinds) if kinds is not None else None
    assets = [p for p, m in manifest["assets"].items() if wanted is None or m["kind"] in wanted]
    ds = load_sim_dir(run_dir, assets)
    frames: dict[str, list[AssetFrame]] = {}
    for a in assets:
        if a in ds.assets:
            frames.setdefault(ds.assets[a].kind, []).append(ds.assets[a])
    seed = manifest.get("seed")
    return _Run(None if seed is None else int(seed), frames, read_defects(run_dir))


def evaluate_defects(
    train_dirs: Sequence[Path],
    test_dirs: Sequence[Path],
    kinds: Sequence[str] | None = None,
    window_s: float = WINDOW_S,
    estimator: str = "hgb",
    method: str = "sigmoid",
    balanced: bool = False,
    progress: Callable[[str], None] | None = None,
    outcomes: Mapping[str, Sequence[str]] | None = None,
) -> list[DefectResult]:
    """Train a DefectModel per asset kind on the runs of ``train_dirs`` and score the runs of ``test_dirs``.

    ``kinds=None``: every kind with a defect in training. A kind without enough positive training windows
    gets a result with a ``note`` saying so. Refuses test runs whose seed was used in training.
    """
    train = [_read_run(d, kinds) for d in train_dirs]
    test = [_read_run(d, kinds) for d in test_dirs]
    trained = {r.seed for r in train if r.seed is not None}
    shared = sorted(trained & {r.seed for r in test if r.seed is not None})
    if shared:
        raise DefectModelError(
            f"seed(s) {shared} are both in training and test runs: the test would not be held out"
        )
    kind_of = {f.asset: k for r in train for k, fs in r.frames.items() for f in fs}
    if kinds is None:
        todo = sorted({kind_of[d.asset] for r in train for d in r.defects if d.asset in kind_of})
    else:
        todo = list(kinds)
    results = []
    for kind in todo:
        frames = [f for r in train for f in r.frames.get(kind, [])]
        labels = [r.defects for r in train for _ in r.frames.get(kind, [])]
        model = DefectModel(
            kind,
            window_s=window_s,
            estimator_name=estimator,
            balanced=balanced,
            method=method,
            outcomes=tuple((outcomes or {}).get(kind, ())),
        )
        try:
            seeds = [r.seed for r in train if r.seed is not None]
            model.fit(frames, labels, seeds=seeds, progress=progress)
        except DefectModelError as exc:
            results.append(_empty(kind, f"not trained ({str(exc).removeprefix(kind + ': ')})"))
            continue
        results.append(score_runs(model, [(r.frames.get(kind, []), r.defects) for r in test]))
        if progress:
            progress(results[-1].line())
    return results


def _empty(kind: str, note: str) -> DefectResult:
    nan = math.nan
    return DefectResult(kind, 0, 0, nan, nan, nan, nan, nan, nan, nan, note=note)


def score_runs(
    model: DefectModel, runs: Sequence[tuple[Sequence[AssetFrame], Sequence[DefectRecord]]]
) -> DefectResult:
    """Held-out figures of a fitted model on runs given as (frames of its kind, the runs' defects)."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    ps: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    per_mode_y: dict[str, list[np.ndarray]] = {}
    per_mode_p: dict[str, list[np.ndarray]] = {}
    defects = unscored = 0
    for frames, recs in runs:
        for frame in frames:
            ft = model.window_features(frame)
            p = model.predict_proba(ft)
            mine = [r for r in recs if r.asset == frame.asset]
            counts = defect_counts(ft.t_ns, model.window_ns(frame), [r.ts_ns for r in mine])
            defects += len(mine)
            unscored += len(mine) - int(counts[ft.valid].sum())
            ok = ft.valid
            ps.append(p[ok])
            ys.append(counts[ok] > 0)
            mp = model.predict_mode_proba(ft)
            for m in sorted({r.mode for r in mine} | set(mp)):
                times = [r.ts_ns for r in mine if r.mode == m]
                ym = defect_labels(ft.t_ns, model.window_ns(frame), times)[ok]
                per_mode_y.setdefault(m, []).append(ym)
                per_mode_p.setdefault(m, []).append(mp[m][ok] if m in mp else p[ok])
    p = np.concatenate(ps) if ps else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0, bool)
    tr = model.metadata.get("training", {})
    if not len(y) or y.all() or not y.any():
        return _empty(model.kind, f"not scored: {len(y)} test windows, {int(y.sum())} with a defect")
    pred = p >= model.threshold
    tp = int(np.sum(pred & y))
    base = tr.get("positives", 0) / max(tr.get("windows", 1), 1)
    bins, ece = reliability(y, p)
    modes = []
    for m in sorted(per_mode_y):
        ym, pm = np.concatenate(per_mode_y[m]), np.concatenate(per_mode_p[m])
        if ym.any() and not ym.all():
            modes.append((m, int(ym.sum()), float(roc_auc_score(ym, pm))))
    return DefectResult(
        kind=model.kind,
        windows=len(y),
        positives=int(y.sum()),
        auc=float(roc_auc_score(y, p)),
        precision=tp / max(int(pred.sum()), 1),
        recall=tp / int(y.sum()),
        threshold=model.threshold,
        brier=float(brier_score_loss(y, p)),
        brier_base_rate=float(np.mean((base - y) ** 2)),
        ece=ece,
        bins=tuple(bins),
        top=tuple(model.importance[:5]),
        modes=tuple(modes),
        defects=defects,
        unscored=unscored,
        train_windows=int(tr.get("windows", 0)),
        train_positives=int(tr.get("positives", 0)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m analytics.defects --train RUN... --test RUN... [--kinds K...]``: print the figures."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m analytics.defects", description=main.__doc__)
    ap.add_argument("--train", nargs="+", type=Path, required=True)
    ap.add_argument("--test", nargs="+", type=Path, required=True)
    ap.add_argument("--kinds", nargs="*")
    ap.add_argument("--window-s", type=float, default=WINDOW_S)
    ap.add_argument("--estimator", choices=("hgb", "logistic"), default="hgb")
    ap.add_argument("--method", choices=("sigmoid", "isotonic"), default="sigmoid")
    ap.add_argument("--balanced", action="store_true", help="weight the classes (slower trees)")
    ap.add_argument("--details", action="store_true")
    a = ap.parse_args(argv)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    results = evaluate_defects(
        a.train, a.test, a.kinds or None, a.window_s, a.estimator, a.method, a.balanced, progress=say
    )
    for r in results:
        print(r.line())
        for line in r.details() if a.details else []:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
