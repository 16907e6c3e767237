"""Plain classifiers on the features the FacePhi LLM reads: does the encoder or the LLM limit accuracy?

    python -m training.probe_facephi_features                                 # the shipped encoder
    python -m training.probe_facephi_features --encoder runs/encoder_continued --out /tmp/heads.json

A linear probe (the one align_encoder reports) and a one-hidden-layer MLP are trained on exactly
what the LLM stages learn from: the stage-1 faces, then the stage-1 and stage-2 faces together
(training/train_facephi.py `stage_data`: same stratified picks, same cached features), each face's
feature averaged over the renderings in which it was found, original and mirrored. They are scored
on the evaluation's 1,400 stratified FER2013 test images (training/eval_facephi.py `eval_pick`),
pooled the same way, an image without a face counting as wrong. If a plain head on the same
features does no better than the LLM's likelihood mode, the encoder is the limit, not the LLM.
On the stage-1 and stage-2 faces the same two heads are also trained on MediaPipe's 52 blendshapes
(pooled and mirrored the same way) and on the encoder feature and the blendshapes side by side:
would giving the LLM the blendshapes as well lift its ceiling? When the model folder has an
expression model (the projector's second input, facephi/expression.py), the heads are also trained
on its embedding alone and on the encoder feature and the embedding side by side: exactly the
LLM's input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.sequences import mean_over_found
from facephi_ros.evaluation.metrics import command_line, write_result
from facephi_ros.facephi.encoder import load_encoder
from facephi_ros.facephi.expression import ExpressionEncoder
from facephi_ros.facephi.runtime import pooled_view_input, projector_input
from facephi_ros.facephi.files import weights_key
from facephi_ros.features.normalize import mirror_blendshapes
from facephi_ros.models.lstm import ModelFileError
from facephi_ros.paths import shipped
from training.align_encoder import linear_probe
from training.eval_facephi import eval_pick
from training.train_facephi import feature_key, stage_data

REPO = Path(__file__).resolve().parent.parent


def mlp_head(x: torch.Tensor, y: torch.Tensor, n_cls: int, hidden: int = 512, epochs: int = 40, seed: int = 0):
    """A standardised-input MLP (hidden GELU layer, dropout 0.3, label smoothing 0.1, AdamW): x -> logits."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.GELU(), nn.Dropout(0.3), nn.Linear(hidden, n_cls))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
    xn = (x - mu) / sd
    for _ in tqdm(range(epochs), desc=f"MLP head on {len(x)} inputs", leave=False):
        net.train()
        for b in torch.randperm(len(xn)).split(256):
            loss = F.cross_entropy(net(xn[b]), y[b], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return lambda f: net((f - mu) / sd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/configs/facephi_fer7.yaml")
    ap.add_argument("--encoder", default=str(shipped("models") / "facephi" / "encoder"))
    ap.add_argument("--seed", type=int, default=0, help="train_facephi's seed (which faces each stage picked)")
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/facephi_feature_heads.json")
    a = ap.parse_args(argv)
    full = yaml.safe_load(Path(a.config).read_text())
    classes, views = full["classes"], bool(full.get("views"))
    try:
        enc, _ = load_encoder(a.encoder)
    except ModelFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # the LLM stages' feature cache: the encoder feature, then the expression embedding when the
    # model folder holding the encoder has an expression model (facephi/expression.py)
    model_dir = Path(a.encoder).parent
    expr = ExpressionEncoder(model_dir / "expression") if (model_dir / "expression").is_dir() else None
    key = feature_key(model_dir) if expr is not None else weights_key(a.encoder)
    train = load_split(full["features"], "train", classes, views=views)
    test = load_split(full["features"], "test", classes, views=views)
    pick = eval_pick(test, a.n_test or full["eval"]["n_test"])
    if views:
        found = test.found_any[pick]
        vf = test.view_found[pick][found]
        f_test = pooled_view_input(enc, expr, test.view_landmarks[pick][found], test.view_blendshapes[pick][found], vf)
        b_test = mean_over_found(torch.as_tensor(test.view_blendshapes[pick][found]).float(), torch.as_tensor(vf))
    else:
        found = test.found[pick]
        b_test = torch.as_tensor(test.blendshapes[pick][found]).float()
        f_test = projector_input(enc, expr, test.norm_landmarks[pick][found], b_test)
    E = enc.out_dim  # the first E numbers of a feature are the encoder's
    y_test = test.labels[pick]

    def acc(logits: torch.Tensor) -> float:
        return float((logits.argmax(1).numpy() == y_test[found]).sum() / len(y_test))

    def heads(name: str, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor) -> None:
        with torch.no_grad():
            res[f"linear_{name}"] = acc(linear_probe(x, y, len(classes))(x_test))
        head = mlp_head(x, y, len(classes))
        with torch.no_grad():
            res[f"mlp_{name}"] = acc(head(x_test))
        print(f"{name}: linear {res[f'linear_{name}']:.3f}, MLP {res[f'mlp_{name}']:.3f} on {len(x)} inputs", flush=True)

    xs, bs, ys, res = [], [], [], {}
    for stage in (1, 2):
        faces, feats, mirror, ok = stage_data(enc, train, stage, full[f"stage{stage}"].get("train_images", 0), a.seed, views,
                                              key, expr)
        shapes = train.view_blendshapes[faces] if views else train.blendshapes[faces][:, None]
        xs += [mean_over_found(feats, ok), mean_over_found(mirror, ok)]
        bs += [mean_over_found(torch.as_tensor(s).float(), ok) for s in (shapes, mirror_blendshapes(shapes))]
        ys += [torch.as_tensor(train.labels[faces])] * 2
        x, b, y = torch.cat(xs), torch.cat(bs), torch.cat(ys)
        name = "stage1" if stage == 1 else "stages12"
        heads(name, x[:, :E], y, f_test[:, :E])
        res[f"train_inputs_{name}"] = int(len(x))
    heads("blendshapes_stages12", b, y, b_test)
    heads("encoder_blendshapes_stages12", torch.cat([x[:, :E], b], 1), y, torch.cat([f_test[:, :E], b_test], 1))
    if expr is not None:  # what the LLM reads since the expression input: the embedding alone, and beside the encoder's
        heads("expression_stages12", x[:, E:], y, f_test[:, E:])
        heads("encoder_expression_stages12", x, y, f_test)
    enc_dir = Path(a.encoder).resolve()
    res.update({"encoder": str(enc_dir.relative_to(REPO) if enc_dir.is_relative_to(REPO) else enc_dir), "encoder_key": key, "n_test": int(len(pick)), "views": views,
                "detection_rate": float(found.mean()), "command": command_line("python -m training.probe_facephi_features", argv)})
    llm = REPO / "docs/results/facephi_fer2013.json"
    if llm.is_file() and enc_dir == (shipped("models") / "facephi" / "encoder").resolve():
        r = json.loads(llm.read_text())
        res["llm_likelihood_acc"], res["llm_keyword_acc"] = r.get("likelihood_acc"), r.get("keyword_acc")
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
