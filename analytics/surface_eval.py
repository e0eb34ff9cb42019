"""Evaluation of the surface inspection on held-out images: per-class precision/recall, detection recall, ROC AUC.

Owns the matching rule, the metrics, the confusion matrix and ``python -m analytics.surface_eval`` (one line per figure).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics.surface import (
    DEFECT_CLASSES,
    MATCH_IOU,
    FoundDefect,
    Labelled,
    SurfaceInspector,
    defect_score,
    iou,
    load_labelled_folder,
    select,
)

MISSED = "missed"  # confusion-matrix column of true defects nothing was found for
NO_DEFECT = "no_defect"  # confusion-matrix row of findings that match no true defect


@dataclass(frozen=True)
class ClassScore:
    """Precision and recall of one class (or of all together)."""

    name: str
    n_true: int
    n_found: int
    n_matched: int

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_found if self.n_found else float("nan")

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_true if self.n_true else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """What the evaluation measured on a set of images."""

    n_images: int
    per_class: tuple[ClassScore, ...]
    overall: ClassScore  # class-aware: a finding counts only with the right class
    detection: ClassScore  # class-agnostic: any class, same IoU rule
    image_auc: float  # ROC AUC of the image score (highest defect-class probability) for "has a defect"
    clean_false_alarm: float  # share of clean images with a "defect" verdict
    defect_image_recall: float  # share of images with defects that got a "defect" verdict
    confusion: dict[str, dict[str, int]]  # true class (or no_defect) -> found class (or missed) -> count
    seconds_per_image: float
    # per class, when the ground truth has contrasts: (median |contrast|, recall below it, recall above it)
    recall_by_contrast: dict[str, tuple[float, float, float]]

    def as_dict(self) -> dict[str, float]:
        """The figures as a flat mapping (what ``SurfaceInspector`` saves as its metrics)."""
        out = {
            "overall_precision": self.overall.precision,
            "overall_recall": self.overall.recall,
            "detection_precision": self.detection.precision,
            "detection_recall": self.detection.recall,
            "image_roc_auc": self.image_auc,
            "clean_image_false_alarm": self.clean_false_alarm,
            "defect_image_recall": self.defect_image_recall,
        }
        for c in self.per_class:
            out[f"{c.name}_precision"] = c.precision
            out[f"{c.name}_recall"] = c.recall
        return {k: round(float(v), 4) for k, v in out.items()}


def match(
    found: Sequence[FoundDefect], truth: Sequence[tuple[str, tuple[int, int, int, int]]], *, same_class: bool
) -> list[int | None]:
    """The matching rule: findings, most probable first, each take the unmatched true defect they overlap
    most with IoU >= 0.3 (and, if ``same_class``, of the same class); each true defect matches at most once.
    Returns, per finding, the index of its true defect or None."""
    taken = [False] * len(truth)
    out: list[int | None] = [None] * len(found)
    for i in sorted(range(len(found)), key=lambda k: -found[k].probability):
        best, best_v = None, MATCH_IOU
        for j, (cls, box) in enumerate(truth):
            if taken[j] or (same_class and cls != found[i].cls):
                continue
            v = iou(found[i].box, box)
            if v >= best_v:
                best, best_v = j, v
        if best is not None:
            taken[best] = True
            out[i] = best
    return out


def evaluate(inspector: SurfaceInspector, images: Sequence[Labelled]) -> Evaluation:
    """Inspect every image and score the findings against its ground truth."""
    from sklearn.metrics import roc_auc_score

    rows = [*DEFECT_CLASSES, NO_DEFECT]
    cols = [*DEFECT_CLASSES, MISSED]
    confusion = {r: dict.fromkeys(cols, 0) for r in rows}
    n_true = dict.fromkeys(DEFECT_CLASSES, 0)
    n_found = dict.fromkeys(DEFECT_CLASSES, 0)
    n_match = dict.fromkeys(DEFECT_CLASSES, 0)
    det_match = 0
    labels, scores, verdicts = [], [], []
    found_by_contrast: dict[str, list[tuple[float, bool]]] = {c: [] for c in DEFECT_CLASSES}
    t0 = time.perf_counter()
    for img in images:
        truth = [(d.cls, tuple(d.box)) for d in img.defects]
        scored = inspector.score(img.pixels)
        found = select(scored, inspector.min_probability)
        labels.append(bool(truth))
        scores.append(defect_score(scored.proba))
        verdicts.append(bool(found))
        for cls, _ in truth:
            n_true[cls] += 1
        for f in found:
            n_found[f.cls] += 1
        matched = match(found, truth, same_class=True)
        for i, j in enumerate(matched):
            if j is not None:
                n_match[found[i].cls] += 1
        for j, d in enumerate(img.defects):
            contrast = getattr(d, "contrast", None)
            if contrast is not None:
                found_by_contrast[d.cls].append((abs(float(contrast)), j in matched))
        agnostic = match(found, truth, same_class=False)
        hit = set()
        for i, j in enumerate(agnostic):
            if j is None:
                confusion[NO_DEFECT][found[i].cls] += 1
            else:
                det_match += 1
                hit.add(j)
                confusion[truth[j][0]][found[i].cls] += 1
        for j, (cls, _) in enumerate(truth):
            if j not in hit:
                confusion[cls][MISSED] += 1
    elapsed = time.perf_counter() - t0
    per = tuple(ClassScore(c, n_true[c], n_found[c], n_match[c]) for c in DEFECT_CLASSES)
    tot_true, tot_found = sum(n_true.values()), sum(n_found.values())
    y, s, v = np.array(labels), np.array(scores), np.array(verdicts)
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan")
    return Evaluation(
        n_images=len(labels),
        per_class=per,
        overall=ClassScore("overall", tot_true, tot_found, sum(n_match.values())),
        detection=ClassScore("detection", tot_true, tot_found, det_match),
        image_auc=auc,
        clean_false_alarm=float(v[~y].mean()) if (~y).any() else float("nan"),
        defect_image_recall=float(v[y].mean()) if y.any() else float("nan"),
        confusion=confusion,
        seconds_per_image=elapsed / max(len(labels), 1),
        recall_by_contrast={c: _split_recall(v) for c, v in found_by_contrast.items() if len(v) >= 4},
    )


def _split_recall(pairs: list[tuple[float, bool]]) -> tuple[float, float, float]:
    """Median contrast, recall of the defects fainter than it and of the others."""
    c = np.array([p[0] for p in pairs])
    hit = np.array([p[1] for p in pairs])
    med = float(np.median(c))
    faint = c < med
    return med, float(hit[faint].mean()) if faint.any() else float("nan"), float(hit[~faint].mean())


def format_table(ev: Evaluation, header: Sequence[str] = ()) -> str:
    """The evaluation as text, one figure a line, then the confusion matrix."""
    lines = [*header, f"{'figure':<44} value"]

    def add(name: str, value: float, extra: str = "") -> None:
        lines.append(f"{name:<44} {value:6.3f}{'  ' + extra if extra else ''}")

    d, o = ev.detection, ev.overall
    add("detection recall (class-agnostic, IoU>=0.3)", d.recall, f"{d.n_matched}/{d.n_true}")
    add("detection precision (class-agnostic)", d.precision, f"{d.n_matched}/{d.n_found}")
    add("overall recall (class and IoU>=0.3)", o.recall, f"{o.n_matched}/{o.n_true}")
    add("overall precision (class and IoU>=0.3)", o.precision, f"{o.n_matched}/{o.n_found}")
    for c in ev.per_class:
        add(f"{c.name} recall", c.recall, f"{c.n_matched}/{c.n_true}")
        add(f"{c.name} precision", c.precision, f"{c.n_matched}/{c.n_found}")
    for cls, (med, faint, strong) in ev.recall_by_contrast.items():
        add(f"{cls} recall, |contrast| < {med:.3f}", faint)
        add(f"{cls} recall, |contrast| >= {med:.3f}", strong)
    add("image ROC AUC (defect verdict score)", ev.image_auc)
    add("clean images with a defect verdict", ev.clean_false_alarm)
    add("defect images with a defect verdict", ev.defect_image_recall)
    add("seconds per image (inspection)", ev.seconds_per_image)
    cols = [*DEFECT_CLASSES, "missed"]
    lines.append(
        "confusion (rows: true class, columns: found class; no_defect = finding matching no true defect)"
    )
    lines.append(f"{'':<11}" + "".join(f"{c:>11}" for c in cols))
    for r, row in ev.confusion.items():
        lines.append(f"{r:<11}" + "".join(f"{row[c]:>11d}" for c in cols))
    goal = d.recall >= 0.95 and d.precision >= 0.9 and o.recall >= 0.95 and o.precision >= 0.9
    lines.append(
        f"goal recall >= 0.95 at precision >= 0.9 (detection and classification): {'met' if goal else 'NOT met'}"
    )
    return "\n".join(lines)


def render_folder(out: Path, n: int, seed: int) -> Path:
    """Render ``n`` labelled images with the plant simulator's camera into ``out`` (PNG + JSON each).

    The simulator is run as a program: analytics reads its images as files, like a plant camera's,
    and does not import the simulator (the package graph is one-way).
    """
    cmd = [
        sys.executable,
        "-m",
        "plant_simulator.surface",
        "--out",
        str(out),
        "--n",
        str(n),
        "--seed",
        str(seed),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analytics.surface_eval",
        description="Train the surface inspector and score it on held-out images",
    )
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--train-dir", type=Path, help="labelled PNG folder to train on instead of rendering")
    parser.add_argument("--test-dir", type=Path, help="labelled PNG folder to test on instead of rendering")
    parser.add_argument("--min-probability", type=float, default=0.5)
    parser.add_argument(
        "--save-model", type=Path, help="save the trained inspector (with these metrics) here"
    )
    args = parser.parse_args(argv)
    if args.train_dir is None and args.test_dir is None and args.train_seed == args.test_seed:
        parser.error("--test-seed must differ from --train-seed: the test images must be held out")
    with tempfile.TemporaryDirectory(prefix="surface-eval-") as tmp:
        train_dir = args.train_dir or render_folder(Path(tmp) / "train", args.n_train, args.train_seed)
        test_dir = args.test_dir or render_folder(Path(tmp) / "test", args.n_test, args.test_seed)
        train, test = load_labelled_folder(train_dir), load_labelled_folder(test_dir)
    t0 = time.perf_counter()
    inspector = SurfaceInspector(min_probability=args.min_probability).fit(train, seed=args.train_seed)
    fit_s = time.perf_counter() - t0
    ev = evaluate(inspector, test)
    regions = inspector.metadata["training"]["regions"]
    where = f"{args.train_dir}" if args.train_dir else f"seed {args.train_seed}"
    test_where = f"{args.test_dir}" if args.test_dir else f"seed {args.test_seed}"
    header = [
        f"trained on {len(train)} images ({where}, {regions} regions, {fit_s:.1f} s); "
        f"tested on {len(test)} held-out images ({test_where}); min probability {args.min_probability}",
    ]
    print(format_table(ev, header))
    if args.save_model:
        inspector.metadata["metrics"] = {"test_seed": args.test_seed, "n_test": len(test), **ev.as_dict()}
        inspector.save(args.save_model)
        print(f"model saved to {args.save_model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
