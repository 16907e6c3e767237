"""Train the temporal LSTM emotion model (or its per-frame baseline) on landmark features.

    python -m training.train_lstm --config training/configs/lstm_fer7.yaml            # -> models/lstm_fer7
    python -m training.train_lstm --config training/configs/lstm_fer7.yaml --per-frame  # -> models/frame_fer7

Sequences are synthesised from still images (facephi_ros.data.sequences); with `views: true` in
the config their frames come from several real landmarker passes per image (build_dataset --views). Validation uses a
seeded hold-out of the training split; the test split is only read by training/eval_lstm.py.
Writes weights.safetensors, model.json (architecture, features, classes, config), metrics.json
and confusion_val.png to the output folder.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.image_folder import EXTRA_VIEWS
from facephi_ros.data.sequences import SequenceAugment, assemble, make_sequences
from facephi_ros.evaluation.metrics import classification_report, command_line, plot_confusion
from facephi_ros.features.normalize import FeatureConfig
from facephi_ros.models.lstm import EmotionLSTM, LSTMConfig, save_model

# A still face watched by a camera: mild jitter, no transitions, no mirroring, no held frames.
STREAM_AUGMENT = SequenceAugment(p_transition=0.0, rot_offset_deg=2.0, rot_jitter_deg=1.0, scale_jitter=0.02,
                                 landmark_noise=(0.004, 0.004), blendshape_noise=0.02, p_hold=0.0, p_mirror=0.0)


def feature_kwargs(fc: FeatureConfig) -> dict:
    return {"landmark_index": torch.as_tensor(fc.landmark_subset) if fc.landmark_subset else None,
            "landmark_dims": fc.landmark_dims, "use_landmarks": fc.landmarks, "use_blendshapes": fc.blendshapes}


@torch.no_grad()
def stream_probs(model: EmotionLSTM, lm: torch.Tensor, bs: torch.Tensor, window: int, seed: int = 123,
                 batch: int = 512, view_found: torch.Tensor | None = None,
                 appearance: torch.Tensor | None = None) -> np.ndarray:
    """Class probabilities after `window` frames of a camera-like stream of each still face
    (window=1 and a per-frame model: the clean single frame). With views (lm (N, V, 478, 3),
    bs (N, V, 52), view_found (N, V)), every frame of the stream is one of the image's views.
    appearance: the hybrid model's appearance vectors, (N, A) with one frame, (N, V, A) with views."""
    model.eval()
    if window == 1 and lm.dim() == 4:
        raise ValueError("a single clean frame has no views: pass the original view's features")
    fk = feature_kwargs(model.cfg.feature_config)
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(lm), batch):
        idx = torch.arange(i, min(i + batch, len(lm)))
        if window == 1:
            x = assemble(lm[idx][:, None], bs[idx][:, None], **fk)
            if appearance is not None:
                x = torch.cat([x, appearance[idx][:, None].float()], -1)
        else:
            x, _ = make_sequences(lm, bs, torch.zeros(len(lm), dtype=torch.long), idx, idx, window, STREAM_AUGMENT, gen,
                                  view_found=view_found, appearance=appearance, **fk)
        out.append(torch.softmax(model(x.to(dev))[:, -1], -1).cpu())
    return torch.cat(out).numpy()


def load_single(folder: Path, flag: str, **expect) -> EmotionLSTM:
    """A trained single model to start from (load_model's checks); an ensemble is refused in one line."""
    from facephi_ros.models.lstm import load_model

    src, _ = load_model(folder, **expect)
    if not isinstance(src, EmotionLSTM):
        raise SystemExit(f"{flag} {folder} is an ensemble: start from one of its members")
    return src


def init_from(model: EmotionLSTM, folder: Path) -> None:
    """Copy a per-frame model's encoder (with its input statistics) and head into `model`, and
    shrink the LSTM's initial weights tenfold: its output is then near 0 and the residual passes
    each frame's encoding almost unchanged, so training starts from the per-frame model's predictions."""
    src = load_single(folder, "--init-from", expect_features=model.cfg.feature_config, expect_classes=model.cfg.classes)
    if src.cfg.input_norm != model.cfg.input_norm:
        raise SystemExit(f"--init-from {folder}: input_norm {src.cfg.input_norm} differs from {model.cfg.input_norm}")
    state = {k: v for k, v in src.state_dict().items() if k.startswith(("encoder.", "head."))}
    missing = model.load_state_dict(state, strict=False)
    if missing.unexpected_keys:
        raise SystemExit(f"--init-from {folder}: unexpected weights {missing.unexpected_keys[:3]}")
    if model.lstm is not None:
        with torch.no_grad():
            for p in model.lstm.parameters():
                p.mul_(0.1)


def init_encoder_from(model: EmotionLSTM, folder: Path) -> None:
    """Copy another trained model's encoder (with its input statistics) into `model`: the same
    features and sizes, any class list (for example a 3-class model starting from the 7-class
    model's encoder, which learnt from every image). The head and the LSTM start fresh."""
    src = load_single(folder, "--init-encoder-from", expect_features=model.cfg.feature_config)
    if (src.cfg.input_norm, src.cfg.encoder_hidden, src.cfg.hidden) != (model.cfg.input_norm, model.cfg.encoder_hidden,
                                                                      model.cfg.hidden):
        raise SystemExit(f"--init-encoder-from {folder}: its encoder's design differs from this model's")
    model.load_state_dict({k: v for k, v in src.state_dict().items() if k.startswith("encoder.")}, strict=False)


def holdout(found: np.ndarray, found_any: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple:
    """(training, validation) image indices: validation is a seeded share of the images whose
    original rendering shows a face; training is every other image with a face in any rendering."""
    idx = np.nonzero(found)[0]
    rng.shuffle(idx)
    val_idx = np.sort(idx[:int(len(idx) * fraction)])
    return np.setdiff1d(np.nonzero(found_any)[0], val_idx), val_idx


def validation_split(cfg: dict, data) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) image indices of a training config: the pixel teacher's hold-out
    (train.val_split: teacher_holdout) or a share drawn with the config's own seed (never the
    --seed of one training run, so models of different seeds are validated on the same faces)."""
    tc = cfg["train"]
    if tc.get("val_split") == "teacher_holdout":  # the images the pixel teacher never trained on
        return teacher_holdout(cfg["features_dir"], data)
    return holdout(data.found, data.found_any, tc["val_fraction"], np.random.default_rng(tc["seed"]))


def teacher_holdout(features_dir, data) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) image indices where validation is the pixel teacher's own held-out
    share of the training split (train_pixel_teacher's stratified 10%, seed 0) with a face in the
    original rendering: the hybrid model reads the teacher's output, which is better on the
    images the teacher trained on, so only those it never saw tell how the hybrid will do."""
    from training.train_pixel_teacher import stratified_split

    full = np.load(Path(features_dir) / "train.npz")
    _, val_full = stratified_split(full["labels"].astype(np.int64), 0.1, 0)
    val_paths = {str(p) for p in full["paths"][val_full]}
    in_val = np.array([str(p) in val_paths for p in data.paths])
    return np.nonzero(data.found_any & ~in_val)[0], np.nonzero(data.found & in_val)[0]


@torch.no_grad()
def input_stats(lm: torch.Tensor, bs: torch.Tensor, view_found: torch.Tensor | None, fk: dict,
                appearance: torch.Tensor | None = None) -> tuple:
    """Per-feature mean and standard deviation of the frames training draws from: every found
    view (lm (N, V, 478, 3)) or the one rendering (lm (N, 478, 3)); appearance vectors appended."""
    s = s2 = None
    n = 0
    for i in range(0, len(lm), 2048):
        x = assemble(lm[i:i + 2048], bs[i:i + 2048], **fk).double()
        if appearance is not None:
            x = torch.cat([x, appearance[i:i + 2048].double()], -1)
        if view_found is not None:
            x = x[view_found[i:i + 2048]]
        s = x.sum(0) if s is None else s + x.sum(0)
        s2 = (x * x).sum(0) if s2 is None else s2 + (x * x).sum(0)
        n += len(x)
    mean = s / n
    return mean.float(), (s2 / n - mean * mean).clamp_min(0).sqrt().float()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--per-frame", action="store_true", help="train the per-frame baseline (no LSTM, no time axis)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: models/<name>)")
    ap.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="a trained per-frame model (same features, classes and sizes) whose encoder and head start the LSTM")
    ap.add_argument("--init-encoder-from", type=Path, default=None,
                    help="a trained model (same features and sizes, any classes) whose encoder starts this one")
    ap.add_argument("--lr", type=float, default=None, help="override the config's peak learning rate")
    ap.add_argument("--distill-alpha", type=float, default=None,
                    help="override the config's distill.alpha (share of the hard-label loss; 1 = no distillation)")
    ap.add_argument("--distill-temperature", type=float, default=None, help="override the config's distill.temperature")
    ap.add_argument("--no-distill", action="store_true", help="ignore the config's distill section")
    ap.add_argument("--camera-views", action="store_true", help="set the config's camera_views: true")
    ap.add_argument("--seed", type=int, default=None,
                    help="training seed (initialisation, order, augmentation) in place of the config's; the "
                         "validation hold-out keeps the config's seed, so models of different seeds share it")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(a.config.read_text())
    if a.camera_views:
        cfg["camera_views"] = True
    distill = None if a.no_distill else dict(cfg.get("distill") or {}) or None
    if distill is not None:
        distill["alpha"] = a.distill_alpha if a.distill_alpha is not None else distill.get("alpha", 0.5)
        distill["temperature"] = a.distill_temperature if a.distill_temperature is not None else distill.get("temperature", 2.0)
        cfg["distill"] = distill
    elif "distill" in cfg:
        cfg["distill"] = None
    tc, aug = cfg["train"], SequenceAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg["augment"].items()})
    name = cfg["name"].replace("lstm_", "frame_") if a.per_frame else cfg["name"]
    out = a.out or Path("models") / name
    if a.seed is not None:
        tc["train_seed"] = a.seed
    train_seed = tc.get("train_seed", tc["seed"])
    torch.manual_seed(train_seed)

    views = bool(cfg.get("views", False))  # frames drawn from build_dataset --views renderings
    # camera_views: two more training renderings per image (build_dataset --camera-views); validation
    # keeps the original and the views, so its figure stays comparable
    camera = bool(cfg.get("camera_views", False))
    if camera and not views:
        raise SystemExit("camera_views: true needs views: true")
    data = load_split(cfg["features_dir"], "train", cfg["classes"], views=views, camera_views=camera)
    n_val_views = 1 + len(EXTRA_VIEWS)
    tr_idx, val_idx = validation_split(cfg, data)
    lm = torch.from_numpy(data.view_landmarks if views else data.norm_landmarks)
    bs = torch.from_numpy(data.view_blendshapes if views else data.blendshapes)
    vf = torch.from_numpy(data.view_found) if views else None
    app, app_info = None, {}
    if cfg.get("appearance"):  # the hybrid model: the teacher's vector of each rendering's aligned crop
        if not views:
            raise SystemExit("the hybrid model needs views: true (appearance vectors come per rendering)")
        from facephi_ros.data.feature_files import load_appearance

        arr, app_info = load_appearance(cfg["features_dir"], "train", data.paths)
        app = torch.from_numpy(arr)
        print(f"hybrid: {arr.shape[-1]} appearance values per frame ({app_info['embedding_dim']} embedding + "
              f"{len(app_info['classes'])} logits)")
    val_lm, val_bs, val_vf = lm[val_idx], bs[val_idx], vf[val_idx] if views else None
    if views:
        val_lm, val_bs, val_vf = val_lm[:, :n_val_views], val_bs[:, :n_val_views], val_vf[:, :n_val_views]
    val_app = app[val_idx] if app is not None else None
    if a.per_frame and views:  # the per-frame baseline is validated on the single clean frame
        val_lm, val_bs, val_vf = val_lm[:, 0], val_bs[:, 0], None
        val_app = val_app[:, 0] if val_app is not None else None
    y = torch.from_numpy(data.labels.astype(np.int64))
    image_index = torch.arange(len(y))  # sequences report which image each frame shows
    teacher = None
    if distill is not None:
        from facephi_ros.models.distill import TeacherTargets

        teacher = torch.from_numpy(TeacherTargets.load(distill["targets"], data.paths, cfg["classes"]).logits)
        print(f"distilling from {distill['targets']}: alpha {distill['alpha']}, temperature {distill['temperature']}")
    classes = cfg["classes"]
    C = len(classes)
    counts = np.bincount(data.labels[tr_idx], minlength=C)
    weights = (counts.sum() / np.maximum(counts, 1)) ** tc["class_weight_power"]
    weights = torch.tensor(weights / weights.mean() if weights.mean() else weights, dtype=torch.float32)

    appearance = {"embedding_dim": app_info["embedding_dim"], "classes": app_info["classes"],
                  "teacher": app_info.get("teacher", ""), "crop": app_info.get("crop", "")} if app is not None else {}
    mcfg = LSTMConfig(classes=classes, features=FeatureConfig(**cfg["features"]).to_dict(), temporal=not a.per_frame,
                      appearance=appearance, **cfg["model"])
    if a.per_frame:
        mcfg.window = 1
    model = EmotionLSTM(mcfg)
    fk = feature_kwargs(mcfg.feature_config)
    if mcfg.input_norm == "zscore":  # per-feature statistics of the training frames (every found view)
        mean, std = input_stats(lm[tr_idx], bs[tr_idx], vf[tr_idx] if views else None, fk,
                                app[tr_idx] if app is not None else None)
        model.encoder[0].set_stats(mean, std)
    # the LSTM may start from the trained per-frame model (train.init_from) and then fine-tune
    # with train.finetune's epochs and peak learning rate
    start = a.init_from or (Path(tc["init_from"]) if tc.get("init_from") and not a.per_frame else None)
    if a.init_encoder_from:
        init_encoder_from(model, a.init_encoder_from)
        print(f"encoder from {a.init_encoder_from}")
    if start:
        init_from(model, start)
        for k, v in (tc.get("finetune") or {}).items():
            tc[k] = v
    T = 1 if a.per_frame else tc["seq_len"]
    if a.per_frame:
        aug = SequenceAugment(**{**aug.__dict__, "p_transition": 0.0, "p_hold": 0.0})
    elif cfg.get("augment_lstm"):  # the temporal model's own augmentation settings, over `augment`
        over = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["augment_lstm"].items()}
        aug = SequenceAugment(**{**aug.__dict__, **over})
    epochs = a.epochs or tc["epochs"]
    if a.lr is not None:
        tc["lr"] = a.lr
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    model.to(dev)
    weights = weights.to(dev)
    if start:
        print(f"starting from {start}: its encoder and head; then {epochs} epochs at peak lr {tc['lr']}")
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    steps_per_epoch = int(np.ceil(len(tr_idx) / tc["batch_size"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc["lr"], total_steps=epochs * steps_per_epoch,
                                                pct_start=tc.get("pct_start", 0.1))
    clip = tc.get("clip", 1.0)
    from facephi_ros.models.distill import distillation_loss

    def loss_fn(logits, src):  # src: the image each frame shows
        return distillation_loss(logits, y[src].to(dev), teacher[src].to(dev) if teacher is not None else None,
                                 alpha=distill["alpha"] if distill else 1.0,
                                 temperature=distill["temperature"] if distill else 1.0,
                                 weight=weights, label_smoothing=tc["label_smoothing"])
    gen = torch.Generator().manual_seed(train_seed)
    tr_t = torch.from_numpy(tr_idx)
    # partners for transitions come from the training images only
    best, best_epoch, history = -1.0, -1, []
    t0 = time.time()
    print(f"{name}: {len(tr_idx)} train / {len(val_idx)} val faces, {C} classes, seq_len {T}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters -> {out}")
    for epoch in range(epochs):
        model.train()
        perm = tr_t[torch.randperm(len(tr_t), generator=gen)]
        total, n = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for s in bar:
            anchors = perm[s * tc["batch_size"]:(s + 1) * tc["batch_size"]]
            partners = tr_t[torch.randint(len(tr_t), (len(anchors),), generator=gen)]
            x, src = make_sequences(lm, bs, image_index, anchors, partners, T, aug, gen, view_found=vf, appearance=app, **fk)
            logits = model(x.to(dev))
            loss = loss_fn(logits.reshape(-1, C), src.reshape(-1))
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            total += loss.item() * len(anchors)
            n += len(anchors)
            bar.set_postfix(loss=f"{total / n:.3f}")
        probs = stream_probs(model, val_lm, val_bs, mcfg.window, view_found=val_vf, appearance=val_app)
        rep = classification_report(data.labels[val_idx], probs.argmax(1), classes)
        score = rep["accuracy"] + rep["macro_f1"]
        history.append({"epoch": epoch + 1, "loss": round(total / n, 4), "val_acc": round(rep["accuracy"], 4),
                        "val_macro_f1": round(rep["macro_f1"], 4)})
        print(f"epoch {epoch + 1}: loss {total / n:.3f}  val acc {rep['accuracy']:.4f}  macro-F1 {rep['macro_f1']:.4f}"
              f"{'  *' if score > best else ''}  ({time.time() - t0:.0f} s)", flush=True)
        patience = tc.get("patience", 0)
        # patience 0: train every epoch and keep the last model; else keep the best on validation
        if score > best or not patience:
            best, best_epoch, best_rep = max(score, best), epoch + 1, rep
            save_model(model, out, {"trained_with": command_line("python -m training.train_lstm", argv),
                                    "training_config": cfg})
        elif epoch + 1 - best_epoch >= patience:
            print(f"early stop: no improvement for {tc['patience']} epochs")
            break
    metrics = {"name": name, "device": str(dev), "best_epoch": best_epoch, "val": best_rep, "history": history,
               "train_faces": int(len(tr_idx)), "val_faces": int(len(val_idx)),
               "val_images_sha256": hashlib.sha256("\n".join(map(str, data.paths[val_idx])).encode()).hexdigest(),
               "seconds": round(time.time() - t0)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_confusion(best_rep["confusion"], classes, out / "confusion_val.png",
                   f"{name} validation (held-out train), acc {best_rep['accuracy']:.3f}, macro-F1 {best_rep['macro_f1']:.3f}")
    print(f"best epoch {best_epoch}: val acc {best_rep['accuracy']:.4f}, macro-F1 {best_rep['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
