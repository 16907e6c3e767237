"""Evaluate FacePhi on a stratified sample of the FER2013 test split (7 classes).

    python -m training.eval_facephi                       # -> docs/results/facephi_fer2013.json + confusion plots
    python -m training.eval_facephi --ablation runs/facephi_noalign   # also scores the unaligned ablation
    python -m training.eval_facephi --ablation-only       # only the ablation, merged into the existing --out

Two modes, both over the same images (an image without a detected face counts as wrong):
  - keyword: greedy answer to the default instruction; the class whose keyword appears first
    in the answer is the prediction (the FacePhi paper's metric; no keyword = wrong);
  - likelihood: every class's answer scored in one batched forward pass -> a distribution; the
    most likely class is the prediction.
With `views: true` in the config (the default) the model reads, per test image, the encoder
feature averaged over the renderings in which a face was found (build_dataset --views), as the
node pools a face's last frames; an image counts as found when any rendering has a face. The
one-rendering protocol (original image only) is reported beside it under *_single_view.
The aligned encoder's zero-shot and linear-probe accuracies (training/align_encoder.py, whole
test split) and the speed benchmark (benchmarks/facephi_bench.py) are merged into the result.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.evaluation.metrics import classification_report, command_line, plot_confusion, write_result
from facephi_ros.facephi import prompts
from facephi_ros.facephi.runtime import FacePhiRuntime
from training.train_facephi import stratified

REPO = Path(__file__).resolve().parent.parent
EVAL_SEED = 2024  # the stratified test sample's seed


def eval_pick(test, n_test: int) -> np.ndarray:
    """Indices of the stratified test images every FacePhi evaluation scores."""
    return stratified(test.labels, n_test, seed=EVAL_SEED)


def predict(rt: FacePhiRuntime, feats: torch.Tensor, batch: int, max_new_tokens: int):
    probs, answers = [], []
    for i in tqdm(range(0, len(feats), batch), desc="FacePhi answers"):
        f = feats[i:i + batch]
        probs.append(rt.model.class_probs(f).cpu().numpy())
        answers += rt.model.generate(f, max_new_tokens=max_new_tokens)
    return np.concatenate(probs), answers


def test_features(rt: FacePhiRuntime, test, pick: np.ndarray, views: bool) -> tuple[torch.Tensor, np.ndarray]:
    """(features of the images with a face, which images have one): pooled over renderings or the original only."""
    if views:
        found = test.found_any[pick]
        return rt.view_features(test.view_landmarks[pick][found], test.view_blendshapes[pick][found],
                                test.view_found[pick][found]), found
    found = test.found[pick]
    return rt.features_from_normalized(test.norm_landmarks[pick][found], test.blendshapes[pick][found]), found


def score(rt: FacePhiRuntime, test, pick: np.ndarray, views: bool, batch: int, max_new_tokens: int) -> dict:
    classes = rt.classes
    feats, found = test_features(rt, test, pick, views)
    probs, answers = predict(rt, feats, batch, max_new_tokens)
    y = test.labels[pick]
    kw = np.full(len(pick), -1)
    kw[found] = [(-1 if (k := prompts.keyword_class(a, classes)) is None else k) for a in answers]
    lik = np.full(len(pick), -1)
    lik[found] = probs.argmax(1)
    rep_kw = classification_report(y, kw, classes)
    rep_lik = classification_report(y, lik, classes)
    return {"keyword": rep_kw, "likelihood": rep_lik, "kw_pred": kw, "lik_pred": lik, "answers": answers, "found": found,
            "no_keyword_rate": float(np.mean(kw[found] < 0)) if found.any() else 0.0}


def score_ablation(a, test, pick, views: bool, full: dict) -> dict:
    """The no-alignment ablation's accuracies on the same images (None when its folder is absent)."""
    if not (a.ablation and Path(a.ablation).is_dir()):
        if a.ablation_only:
            raise SystemExit(f"--ablation-only: no ablation model at {a.ablation!r} (python -m training.train_facephi "
                             "--no-alignment --out runs/facephi_noalign)")
        return {"keyword_acc_no_alignment": None}
    ab = FacePhiRuntime(a.ablation, dtype=a.dtype)
    s = score(ab, test, pick, views, a.batch, full["eval"]["max_new_tokens"])
    return {"keyword_acc_no_alignment": s["keyword"]["accuracy"], "likelihood_acc_no_alignment": s["likelihood"]["accuracy"],
            "keyword_macro_f1_no_alignment": s["keyword"]["macro_f1"],
            "likelihood_macro_f1_no_alignment": s["likelihood"]["macro_f1"], "ablation_model": a.ablation}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/configs/facephi_fer7.yaml")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--ablation", default="runs/facephi_noalign", help="model folder of the no-alignment ablation ('' = skip)")
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--single-view", action="store_true", help="only the one-rendering protocol, even with views: true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--ablation-only", action="store_true",
                    help="score only --ablation and merge its keys into the existing --out (the main model's figures stay)")
    ap.add_argument("--dtype", default="auto", help="LLM weights: auto = the node's default (bfloat16 on CPUs with bf16), float32, ...")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/facephi_fer2013.json")
    a = ap.parse_args(argv)
    full = yaml.safe_load(Path(a.config).read_text())
    n_test = a.n_test or full["eval"]["n_test"]
    views = bool(full.get("views")) and not a.single_view
    test = load_split(full["features"], "test", full["classes"], views=views)
    pick = eval_pick(test, n_test)
    t0 = time.time()
    if a.ablation_only:
        try:
            res = json.loads(a.out.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"--ablation-only merges into an existing result: cannot read {a.out} ({e}); "
                             "run without --ablation-only first") from None
        if (res.get("n_test"), res.get("views")) != (int(len(pick)), views):
            raise SystemExit(f"--ablation-only: {a.out} was scored on {res.get('n_test')} images, views "
                             f"{res.get('views')}; this run would score {len(pick)}, views {views}: not comparable")
        res.update(score_ablation(a, test, pick, views, full))
        res["ablation_minutes"] = round((time.time() - t0) / 60, 1)
        res["ablation_command"] = command_line("python -m training.eval_facephi", argv)
        write_result(a.out, res, {k: v for k, v in res.items() if "no_alignment" in k or k.startswith("ablation")})
        return 0
    rt = FacePhiRuntime(a.model_dir, dtype=a.dtype)
    main_scores = score(rt, test, pick, views, a.batch, full["eval"]["max_new_tokens"])
    enc_metrics = json.loads((rt.folder / "encoder" / "metrics.json").read_text())
    classes = rt.classes
    res = {
        "keyword_acc": main_scores["keyword"]["accuracy"], "keyword_macro_f1": main_scores["keyword"]["macro_f1"],
        "likelihood_acc": main_scores["likelihood"]["accuracy"], "likelihood_macro_f1": main_scores["likelihood"]["macro_f1"],
        "no_keyword_rate": main_scores["no_keyword_rate"],
        "zero_shot_acc": enc_metrics["zero_shot_acc"], "linear_probe_acc": enc_metrics["linear_probe_acc"],
        "n_test": int(len(pick)), "detection_rate": float(main_scores["found"].mean()), "views": views,
        "per_class_keyword": main_scores["keyword"]["per_class"], "per_class_likelihood": main_scores["likelihood"]["per_class"],
        "example_answers": [{"truth": classes[int(test.labels[pick][i])], "answer": ans}
                            for i, ans in zip(np.flatnonzero(main_scores["found"])[:12], main_scores["answers"][:12])],
        "training": rt.meta.get("history", {}), "llm": rt.name, "dtype": str(rt.dtype).replace("torch.", ""),
    }
    if views:  # the one-rendering protocol beside it
        one = score(rt, test, pick, False, a.batch, full["eval"]["max_new_tokens"])
        res.update({"keyword_acc_single_view": one["keyword"]["accuracy"], "likelihood_acc_single_view": one["likelihood"]["accuracy"],
                    "keyword_macro_f1_single_view": one["keyword"]["macro_f1"],
                    "likelihood_macro_f1_single_view": one["likelihood"]["macro_f1"],
                    "detection_rate_single_view": float(one["found"].mean())})
        for k in ("zero_shot_acc", "linear_probe_acc"):
            if f"{k}_views" in enc_metrics:
                res[f"{k}_views"] = enc_metrics[f"{k}_views"]
    del rt
    res.update(score_ablation(a, test, pick, views, full))
    res["eval_minutes"] = round((time.time() - t0) / 60, 1)
    if not a.skip_bench:
        from benchmarks.facephi_bench import measure, real_faces
        faces = real_faces(REPO.parent / "shared" / "data" / "faces")
        if faces:
            res.update(measure(FacePhiRuntime(a.model_dir), faces, 20))
    res["command"] = command_line("python -m training.eval_facephi", argv)
    out_dir = a.out.parent
    for mode in ("keyword", "likelihood"):
        plot_confusion(main_scores[mode]["confusion"], classes, out_dir / f"{a.out.stem}_confusion_{mode}.png",
                       f"FacePhi {mode} mode, FER2013 test ({len(pick)} images), acc {main_scores[mode]['accuracy']:.3f}")
    show = {k: v for k, v in res.items() if not k.startswith("per_class") and k != "example_answers"}
    write_result(a.out, res, show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
