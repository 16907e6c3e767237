"""Where do the landmark models lose accuracy? A walk from issue 18's plain MLP to the shipped
per-frame recipe, one change at a time, on the project's own features (one rendering).

    python -m training.build_dataset                    # -> runs/features/fer2013 (2-3 min)
    python -m training.ablate_lstm                      # the walk, validation only
    python -m training.ablate_lstm --test --seeds 0 1 2 # + step 0 on the test split, read once

Step 0, the plain MLP: the pose-free normalised landmarks (478 x 3) and the 52 blendshapes of each
found face, z-scored per feature with training statistics; Linear 512, GELU, dropout 0.4, Linear
256, GELU, dropout 0.4, Linear 7; AdamW (weight decay 0.01), one-cycle schedule peaking at 2e-3,
60 epochs, batch 256; cross-entropy with class weights (1/frequency)^0.5 and label smoothing 0.1;
no augmentation, no early stopping.

Every step is trained on 90% of the training split (stratified, seeded) and scored on the other
10% (end-to-end: an image without a face counts as wrong). Each step changes one thing of the
step it names as its parent; the shipped per-frame recipe is training/configs/lstm_fer7.yaml
with train_lstm --per-frame. With --test, step 0 is also trained on the whole training split
and scored once on the test split (issue 18's figure to reproduce: 58.7% end-to-end).
Writes docs/results/lstm_ablation.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "training" / "configs" / "lstm_fer7.yaml"


@dataclass(frozen=True)
class Recipe:
    """One per-frame training recipe; the defaults are step 0 (the plain MLP)."""
    norm: str = "zscore"  # zscore: per-feature training statistics; layernorm: a LayerNorm over each input; both
    arch: str = "plain"  # plain: 512-256 GELU MLP; shipped: EmotionLSTM(temporal=False) (LayerNorms in and before the head)
    dropout: float = 0.4
    epochs: int = 60
    weight_decay: float = 0.01
    pct_start: float = 0.3  # one-cycle warm-up share (torch's default)
    clip: float = 0.0  # gradient-norm clipping (0: none)
    augment: bool = False  # the shipped per-frame augmentation (pose jitter, noise, mirroring)
    patience: int = 0  # early stopping on an inner 10% hold-out of the fit set (0: none, train all epochs)
    batch: int = 256
    width: int = 512  # the plain MLP's first hidden layer (the second has half)
    std_floor: bool = False  # z-scoring as the shipped models do it (models.lstm.Standardize); False: std + 1e-6


def inputs(d) -> np.ndarray:
    return np.concatenate([d.norm_landmarks.reshape(len(d.labels), -1), d.blendshapes], 1).astype(np.float32)


def plain_mlp(n_in: int, n_out: int, dropout: float = 0.4, width: int = 512) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width // 2), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(width // 2, n_out))


class FrameModel(nn.Module):
    """Input normalisation + a per-frame network; input (B, 478 * 3 + 52) as in inputs()."""

    def __init__(self, r: Recipe, n_in: int, classes: list[str], mean: np.ndarray, std: np.ndarray):
        super().__init__()
        from facephi_ros.models.lstm import Standardize

        self.standardize = Standardize(n_in)
        if r.std_floor:  # the shipped Standardize: deviations of at least MIN_STD, clamped output
            self.standardize.set_stats(mean, std)
        else:  # the first walk: std + 1e-6, no clamp
            self.standardize.mean.copy_(torch.from_numpy(mean))
            self.standardize.std.copy_(torch.from_numpy(std))
            self.standardize.CLAMP = float("inf")
        self.zscore = r.norm in ("zscore", "both")
        self.ln = nn.LayerNorm(n_in) if r.norm in ("layernorm", "both") and r.arch == "plain" else None
        if r.arch == "plain":
            self.net = plain_mlp(n_in, len(classes), r.dropout, r.width)
        else:
            from facephi_ros.models.lstm import EmotionLSTM, LSTMConfig

            self.net = EmotionLSTM(LSTMConfig(classes=list(classes), temporal=False, dropout=r.dropout, window=1))
            if r.norm == "zscore":  # its own input LayerNorm replaced: z-scoring alone
                self.net.encoder[0] = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.zscore:
            x = self.standardize(x)
        if self.ln is not None:
            x = self.ln(x)
        out = self.net(x)
        return out[:, -1] if out.dim() == 3 else out


def _augment_batch(x: torch.Tensor, aug, gen) -> torch.Tensor:
    """The shipped per-frame augmentation on flat inputs (landmarks first, then blendshapes)."""
    from facephi_ros.data.sequences import make_sequences

    n = len(x)
    lm, bs = x[:, :478 * 3].reshape(n, 478, 3), x[:, 478 * 3:]
    idx = torch.arange(n)
    seq, _ = make_sequences(lm, bs, torch.zeros(n, dtype=torch.long), idx, idx, 1, aug, gen)
    # make_sequences gives blendshapes first, then landmarks
    return torch.cat([seq[:, 0, 52:], seq[:, 0, :52]], 1)


def shipped_augment():
    from facephi_ros.data.sequences import SequenceAugment

    cfg = yaml.safe_load(SHIPPED_CONFIG.read_text())["augment"]
    aug = SequenceAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    return replace(aug, p_transition=0.0, p_hold=0.0)  # what train_lstm --per-frame uses


def train(r: Recipe, x: np.ndarray, y: np.ndarray, classes: list[str], seed: int = 0, device: str = "cpu",
          desc: str = "") -> tuple[FrameModel, dict]:
    """A FrameModel trained with recipe r on found faces x (N, F), labels y; and what happened."""
    from facephi_ros.evaluation.metrics import classification_report

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    info: dict = {}
    if r.patience:  # an inner hold-out for early stopping, from the fit set only
        perm = np.random.default_rng(seed + 100).permutation(len(y))
        n_stop = len(y) // 10
        stop_idx, fit_idx = perm[:n_stop], perm[n_stop:]
        x_stop, y_stop = x[stop_idx], y[stop_idx]
        x, y = x[fit_idx], y[fit_idx]
    mean, std = x.mean(0), x.std(0) + 1e-6
    n_classes = len(classes)
    model = FrameModel(r, x.shape[1], classes, mean.astype(np.float32), std.astype(np.float32)).to(device)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    freq = np.bincount(y, minlength=n_classes).astype(np.float64)
    weight = torch.tensor((1.0 / np.maximum(freq, 1)) ** 0.5, dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=(weight / weight.mean()).to(device), label_smoothing=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=r.weight_decay)
    steps = (len(y) + r.batch - 1) // r.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=r.epochs * steps, pct_start=r.pct_start)
    aug = shipped_augment() if r.augment else None
    best, best_epoch, best_state = -1.0, 0, None
    for epoch in tqdm(range(r.epochs), desc=desc or "train", unit="epoch", leave=False):
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(r.batch):
            xb = xt[idx]
            if aug is not None:
                xb = _augment_batch(xb, aug, gen)
            opt.zero_grad()
            loss_fn(model(xb.to(device)), yt[idx].to(device)).backward()
            if r.clip:
                nn.utils.clip_grad_norm_(model.parameters(), r.clip)
            opt.step()
            sched.step()
        if r.patience:
            model.eval()
            with torch.no_grad():
                pred = model(torch.from_numpy(x_stop).to(device)).argmax(1).cpu().numpy()
            rep = classification_report(y_stop, pred, classes)
            s = rep["accuracy"] + rep["macro_f1"]
            if s > best:
                best, best_epoch = s, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch + 1 - best_epoch >= r.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
        info = {"stopped_after_epoch": epoch + 1, "best_epoch": best_epoch}
    return model.eval(), info


def score(model: FrameModel, x: np.ndarray, y: np.ndarray, found: np.ndarray, classes: list[str]) -> dict:
    """Accuracy of found faces and end-to-end (no face = wrong), macro-F1 end-to-end."""
    from facephi_ros.evaluation.metrics import classification_report

    pred = np.full(len(y), -1)
    with torch.no_grad():
        pred[found] = model.cpu()(torch.from_numpy(x[found])).argmax(1).numpy()
    rep = classification_report(y, pred, classes)
    return {"acc7_found": round(float((pred[found] == y[found]).mean()), 4), "acc7": round(rep["accuracy"], 4),
            "macro_f1_7": round(rep["macro_f1"], 4), "images": int(len(y)), "found": round(float(found.mean()), 4)}


PLAIN = Recipe()
SHIPPED_OPT = dict(epochs=30, dropout=0.3, weight_decay=0.05, pct_start=0.1, clip=1.0, batch=128)
# (name, parent, recipe, what changed); every recipe differs from its parent's in one respect
WALK = [
    ("plain", None, PLAIN, "issue 18's plain MLP"),
    ("layernorm_input", "plain", replace(PLAIN, norm="layernorm"), "a LayerNorm over the input instead of per-feature z-scoring"),
    ("augment", "plain", replace(PLAIN, augment=True), "+ the shipped per-frame augmentation (pose jitter, noise, mirroring)"),
    ("shipped_optimiser", "augment", replace(PLAIN, augment=True, **SHIPPED_OPT),
     "+ the shipped schedule: 30 epochs, dropout 0.3, weight decay 0.05, warm-up 10%, clipping 1, batch 128"),
    ("early_stopping", "shipped_optimiser", replace(PLAIN, augment=True, patience=6, **SHIPPED_OPT),
     "+ an inner 10% hold-out and early stopping (patience 6), as train_lstm does"),
    ("shipped_architecture", "early_stopping", replace(PLAIN, augment=True, patience=6, arch="shipped", norm="layernorm", **SHIPPED_OPT),
     "+ the shipped network (EmotionLSTM per-frame: LayerNorm on the input and before the head): the shipped per-frame recipe"),
    ("shipped_architecture_zscore", "shipped_architecture",
     replace(PLAIN, augment=True, patience=6, arch="shipped", norm="zscore", **SHIPPED_OPT),
     "the shipped recipe with per-feature z-scoring in place of its input LayerNorm"),
    ("plain_zscore_no_augment_shipped_arch", "plain", replace(PLAIN, arch="shipped", norm="zscore"),
     "the plain recipe on the shipped network (z-scored input instead of its LayerNorm)"),
    ("plain_std_floor", "plain", replace(PLAIN, std_floor=True),
     "z-scoring with deviations of at least 0.01 and inputs clamped to +-10 (near-constant blendshapes)"),
    ("augment_std_floor", "plain_std_floor", replace(PLAIN, std_floor=True, augment=True),
     "+ the shipped per-frame augmentation, with the floored z-scoring"),
    ("epochs_30", "plain", replace(PLAIN, epochs=30), "30 epochs instead of 60"),
    ("epochs_100", "plain", replace(PLAIN, epochs=100), "100 epochs instead of 60"),
    ("dropout_0.2", "plain", replace(PLAIN, dropout=0.2), "dropout 0.2 instead of 0.4"),
    ("width_1024", "plain", replace(PLAIN, width=1024), "twice as wide: 1024-512"),
    ("width_256", "plain", replace(PLAIN, width=256), "half as wide: 256-128"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, default=REPO / "runs" / "features" / "fer2013")
    ap.add_argument("--steps", nargs="+", default=None, help=f"only these steps (default all: {[w[0] for w in WALK]})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the figures are their mean)")
    ap.add_argument("--test", action="store_true", help="also train step 0 on the whole training split and score the test split once")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "lstm_ablation.json")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    import json

    from facephi_ros.data.feature_files import load_split
    from facephi_ros.evaluation.metrics import command_line, write_result
    from training.train_pixel_teacher import stratified_split

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tr = load_split(a.features, "train")
    x, y, found = inputs(tr), tr.labels.astype(int), tr.found
    val = np.zeros(len(y), bool)
    val[stratified_split(y, 0.1, seed=0)[1]] = True
    fit = ~val & found
    res = json.loads(a.out.read_text()) if a.out.is_file() else {}
    if "plain_mlp_test" in res and "test_command" not in res:  # written before the walk existed
        res["test_command"] = res.get("command")
    done = {s["step"]: s for s in res.get("steps", []) if "recipe" in s}
    res.update({"classes": tr.classes, "features": str(a.features.relative_to(REPO)) if a.features.is_relative_to(REPO) else str(a.features),
                "feature_provenance": tr.provenance,
                "validation": "stratified 10% of the FER2013 training split (seed 0), end-to-end (no face = wrong)"})
    for name, parent, recipe, change in WALK:
        if a.steps and name not in a.steps:
            continue
        t0 = time.time()
        runs, infos = [], []
        for seed in a.seeds:
            model, info = train(recipe, x[fit], y[fit], tr.classes, seed=seed, device=device, desc=name)
            runs.append(score(model, x[val], y[val], found[val], tr.classes))
            infos.append(info)
        v = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        done[name] = {"step": name, "parent": parent, "change": change, "recipe": asdict(recipe), "val": v,
                      "seeds": a.seeds, "per_seed_val_acc7": [r["acc7"] for r in runs],
                      **({"early_stopping": infos} if recipe.patience else {}),
                      "train_minutes": round((time.time() - t0) / 60 / len(a.seeds), 2),
                      "command": command_line("python -m training.ablate_lstm", argv)}
        print(f"{name:38s} val acc {v['acc7']:.4f}  (found {v['acc7_found']:.4f})  macro-F1 {v['macro_f1_7']:.4f}  "
              f"[{change}]", flush=True)
    res["steps"] = [done[w[0]] for w in WALK if w[0] in done]
    if a.test:
        te = load_split(a.features, "test", tr.classes)
        runs = []
        for seed in a.seeds:
            model, _ = train(PLAIN, x[found], y[found], tr.classes, seed=seed, device=device, desc=f"plain, seed {seed}")
            runs.append(score(model, inputs(te), te.labels.astype(int), te.found, tr.classes))
        t = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0]}
        res["plain_mlp_test"] = {**t, "seeds": a.seeds, "per_seed_acc7": [r["acc7"] for r in runs]}
        res["plain_mlp_acc7_single_view"] = t["acc7"]
        res["plain_mlp_reference"] = {"acc7": 0.587, "acc7_found": 0.610, "macro_f1_7": 0.565, "source": "issue 18 (measured 2026-12-02)"}
        print("test:", t)
        res["test_command"] = command_line("python -m training.ablate_lstm", argv)
    res["command"] = "python -m training.ablate_lstm"  # the whole walk; each step records the run that made it
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
