"""Stage 0 of FacePhi: align the PointMLP landmark encoder with emotion sentences (ULIP/CLIP style).

    python -m training.align_encoder --config training/configs/facephi_fer7.yaml   # -> models/facephi/encoder
    python -m training.align_encoder --init models/facephi/encoder --epochs 4 --lr 0.0006 --out DIR   # align further

The text side is frozen all-MiniLM-L6-v2; every class has a family of sentences
(facephi_ros/facephi/prompts.py). Each training face is paired with one random sentence of its
class. Because many faces in a batch share a class, the loss treats every same-class pair as a
positive: the target of each row (face -> sentences) and column (sentence -> faces) of the
similarity matrix is uniform over its same-class entries, not the diagonal alone. The
temperature is learned (CLIP's initial 0.07, clamped at 100x).

With `views: true` in the config (top level), each training face is drawn, step by step, from a random one
of its renderings (training/build_dataset.py --views: mirror, zoom, roll...), in which the
landmarker placed the face slightly differently: real landmark noise instead of synthetic only.

Reports, on the FER2013 test split: zero-shot accuracy (nearest class sentence, averaged over the
family) and linear-probe accuracy (logistic regression on the frozen 256-d features of the
training split). An image without a face counts as wrong. With views, the same two are also
reported on the feature averaged over the renderings in which a face was found (*_views keys),
which is what FacePhi's pooled features see (facephi_ros/facephi/runtime.py).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.sequences import mean_over_found, mirror_normalized_landmarks, pick_found_views, random_rotation
from facephi_ros.evaluation.metrics import command_line
from facephi_ros.facephi import prompts
from facephi_ros.facephi.encoder import AlignedEncoder, load_encoder, save_encoder, to_points
from facephi_ros.facephi.files import weights_key
from facephi_ros.facephi.pointmlp import PointMLPConfig
from facephi_ros.models.lstm import ModelFileError
from facephi_ros.facephi.text import TextEncoder
from facephi_ros.paths import shipped


def multi_positive_loss(face_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where all same-class (face, sentence) pairs are positives."""
    logits = scale * face_emb @ text_emb.T
    pos = (labels[:, None] == labels[None, :]).float()
    target = pos / pos.sum(1, keepdim=True)
    loss_f = -(target * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(target.T * logits.T.log_softmax(1)).sum(1).mean()  # pos is symmetric
    return (loss_f + loss_t) / 2


def augment(lm: torch.Tensor, cfg: dict, gen: torch.Generator) -> torch.Tensor:
    n = len(lm)
    flip = torch.rand(n, generator=gen) < cfg["mirror_p"]
    if flip.any():
        lm = lm.clone()
        lm[flip] = mirror_normalized_landmarks(lm[flip])
    lm = lm @ random_rotation(n, cfg["rotation_deg"], gen).transpose(1, 2)
    lm = lm * (1 + cfg["scale_jitter"] * torch.randn(n, 1, 1, generator=gen))
    return lm + cfg["noise"] * torch.randn(lm.shape, generator=gen)


def pooled_features(enc: AlignedEncoder, view_lm: np.ndarray, view_ok: np.ndarray, batch: int = 512) -> torch.Tensor:
    """(N, 256) encoder features averaged over the renderings in which each face was found."""
    n, v = view_ok.shape
    f = enc.encode(view_lm.reshape(n * v, *view_lm.shape[2:]), batch, "view features").view(n, v, -1)
    return mean_over_found(f, torch.as_tensor(view_ok))


def linear_probe(x_tr: torch.Tensor, y_tr: torch.Tensor, n_cls: int, epochs: int = 300, wd: float = 1e-4) -> torch.nn.Linear:
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    lin = torch.nn.Linear(x_tr.shape[1], n_cls)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe")
    xs = (x_tr - mu) / sd

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(xs), y_tr) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        lin.weight /= sd
        lin.bias -= (lin.weight * mu).sum(1)
    return lin


def accuracy_with_misses(pred: np.ndarray, labels: np.ndarray, found: np.ndarray) -> float:
    """Accuracy over all images; `pred` covers the images with a face."""
    return float((pred == labels[found]).sum() / len(labels))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/configs/facephi_fer7.yaml")
    ap.add_argument("--out", default=str(shipped("models") / "facephi" / "encoder"))
    ap.add_argument("--epochs", type=int, help="override the config")
    ap.add_argument("--lr", type=float, help="override the config's peak learning rate")
    ap.add_argument("--init", help="start from this encoder folder's weights (align further) instead of random ones")
    ap.add_argument("--limit", type=int, default=0, help="use only this many training faces (quick runs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    full = yaml.safe_load(Path(args.config).read_text())
    cfg, classes = full["align"], full["classes"]
    epochs = args.epochs or cfg["epochs"]
    cfg["lr"] = args.lr or cfg["lr"]

    views = bool(full.get("views"))
    train = load_split(full["features"], "train", classes, views=views)
    test = load_split(full["features"], "test", classes, views=views)
    faces = train.found_any
    lm = torch.as_tensor(train.norm_landmarks[faces], dtype=torch.float32)
    y = torch.as_tensor(train.labels[faces])
    view_lm = torch.as_tensor(train.view_landmarks[faces]) if views else None  # (N, V, 478, 3)
    view_ok = torch.as_tensor(train.view_found[faces]) if views else None
    original = torch.as_tensor(train.found[faces])
    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(lm), generator=gen)
    order = torch.cat([order[original[order]], order[~original[order]]])  # validate on faces found in the original
    val_idx, tr_idx = order[:cfg["val_size"]], order[cfg["val_size"]:]
    if args.limit:
        tr_idx = tr_idx[:args.limit]

    text = TextEncoder()
    sentences = prompts.align_sentences(classes)
    n_t = len(sentences[0])
    sent_emb = text.encode(sum(sentences, [])).view(len(classes), n_t, -1)  # (C, T, 384), frozen
    proto = F.normalize(sent_emb.mean(1), dim=-1)

    enc = AlignedEncoder(PointMLPConfig.from_dict(cfg["encoder"]), text.dim, classes)
    enc.class_text.copy_(proto)
    if args.init:
        try:
            start, _ = load_encoder(args.init)
        except ModelFileError as e:
            raise SystemExit(f"error: --init: {e}") from None
        if start.backbone.cfg != enc.backbone.cfg:
            raise SystemExit(f"error: --init {args.init} has another encoder configuration than {args.config}")
        enc.load_state_dict(start.state_dict())
        cfg["init"], cfg["init_key"] = str(args.init), weights_key(args.init)  # the key: which weights, even if the folder changes
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps_per_epoch = len(tr_idx) // cfg["batch_size"]
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg["warmup_steps"]) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    t0, history = time.time(), []
    for epoch in range(epochs):
        enc.train()
        perm = tr_idx[torch.randperm(len(tr_idx), generator=gen)]
        bar = tqdm(range(steps_per_epoch), desc=f"align epoch {epoch + 1}/{epochs}")
        for s in bar:
            idx = perm[s * cfg["batch_size"]:(s + 1) * cfg["batch_size"]]
            if views:
                v = pick_found_views(view_ok[idx], gen)
                faces_lm = view_lm[idx, v]
            else:
                faces_lm = lm[idx]
            pts = to_points(augment(faces_lm, cfg, gen))
            lab = y[idx]
            pick = torch.randint(n_t, (len(idx),), generator=gen)
            loss = multi_positive_loss(enc.embed(enc(pts)), sent_emb[lab, pick], lab, enc.logit_scale.exp())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                enc.logit_scale.clamp_(0, math.log(100))
            bar.set_postfix(loss=f"{loss.item():.3f}", T=f"{1 / enc.logit_scale.exp().item():.3f}")
        with torch.no_grad():
            f = enc.encode(lm[val_idx].numpy(), 512)
            val_zs = float(((enc.embed(f) @ proto.T).argmax(1) == y[val_idx]).float().mean())
        history.append({"epoch": epoch + 1, "val_zero_shot": val_zs, "loss": loss.item()})
        print(f"epoch {epoch + 1}: validation zero-shot accuracy {val_zs:.3f}", flush=True)

    # Evaluation on the test split (all images; no face = wrong).
    enc.eval()
    tr_idx = tr_idx[original[tr_idx]]  # the probe learns from original renderings
    f_tr = enc.encode(lm[tr_idx].numpy(), 512, "train features")
    f_te = enc.encode(test.norm_landmarks[test.found], 512, "test features")
    with torch.no_grad():
        zs_pred = (enc.embed(f_te) @ proto.T).argmax(1).numpy()
        probe = linear_probe(f_tr, y[tr_idx], len(classes))
        lp_pred = probe(f_te).argmax(1).numpy()
    result = {
        "zero_shot_acc": accuracy_with_misses(zs_pred, test.labels, test.found),
        "linear_probe_acc": accuracy_with_misses(lp_pred, test.labels, test.found),
        "n_test": int(len(test.labels)), "detection_rate": float(test.found.mean()),
        "train_faces": int(len(tr_idx)), "epochs": epochs, "minutes": (time.time() - t0) / 60,
        "temperature": float(1 / enc.logit_scale.exp()), "history": history, "views": views,
        "command": command_line("python -m training.align_encoder", argv),
    }
    if views:
        anyf = test.found_any
        f_pool = pooled_features(enc, test.view_landmarks[anyf], test.view_found[anyf])
        with torch.no_grad():
            result["zero_shot_acc_views"] = accuracy_with_misses((enc.embed(f_pool) @ proto.T).argmax(1).numpy(), test.labels, anyf)
            result["linear_probe_acc_views"] = accuracy_with_misses(probe(f_pool).argmax(1).numpy(), test.labels, anyf)
        result["detection_rate_views"] = float(anyf.mean())
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    out = save_encoder(enc, args.out, {"metrics": result, "align_config": cfg})
    torch.save({"weight": probe.weight.detach(), "bias": probe.bias.detach()}, Path(out) / "linear_probe.pt")
    (Path(out) / "metrics.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
