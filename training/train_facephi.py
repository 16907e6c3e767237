"""Two-stage FacePhi training (as in the paper): stage 1 trains the projector with the LLM and the
encoder frozen; stage 2 also trains the LLM, through a LoRA adapter (peft) by default or fully.

    python -m training.train_facephi --config training/configs/facephi_fer7.yaml            # both stages -> models/facephi
    python -m training.train_facephi --no-alignment --out runs/facephi_noalign               # ablation: random frozen encoder
    python -m training.train_facephi --resume                                                 # continue after an interruption

Each step draws one of the 15 instructions for the whole batch (so the prompt text before <face>
is computed once per step) and, per face, one of the 10 answers of its class; the loss covers
the answer and the end token only. The encoder is frozen in both stages, so its features
(every rendering of a face, original and mirrored) are computed once and cached under
runs/facephi/; with `views: true` a training input is the mean feature of a random subset of a
face's renderings, as the runtime pools a face's last frames. `train_precision: auto` runs the
LLM under bfloat16 autocast where the device supports it (weights and optimiser stay float32). Checkpoints are
written every `checkpoint_every` steps to runs/facephi/<name>/; --resume picks up the latest.
Uses CUDA when present (no code change needed for a GPU run on the full training split:
set stageN.train_images to 0 = all).
"""
from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from facephi_ros.data.feature_files import load_split
from facephi_ros.data.sequences import mean_over_found, pick_found_views
from facephi_ros.evaluation.metrics import command_line
from facephi_ros.facephi import prompts
from facephi_ros.facephi.encoder import AlignedEncoder, load_encoder, save_encoder
from facephi_ros.facephi.expression import ExpressionEncoder
from facephi_ros.facephi.files import weights_key
from facephi_ros.facephi.llm import device_for, load_llm, pick_dtype
from facephi_ros.facephi.model import FacePhi, Projector, ProjectorConfig, save_projector
from facephi_ros.facephi.runtime import projector_input
from facephi_ros.facephi.pointmlp import PointMLPConfig
from facephi_ros.paths import shipped


def encoder_key(model_dir: Path, random_encoder: bool = False) -> str:
    """The weights key of a FacePhi model folder's encoder (a random encoder differs per config)."""
    return ("random_" if random_encoder else "") + weights_key(model_dir / "encoder")


def feature_key(model_dir: Path, random_encoder: bool = False) -> str:
    """The feature cache's key: the weights of the parts a FacePhi model folder holds (its encoder,
    and its expression model when it has one)."""
    key = encoder_key(model_dir, random_encoder)
    if (model_dir / "expression").is_dir():
        key += "_expr" + weights_key(model_dir / "expression")[:12]
    return key


def stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n items with the class proportions of `labels` (all when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    out = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[np.argsort(-(counts / counts.sum() * n - quota))[: n - quota.sum()]] += 1
    for c, q in zip(classes, quota):
        out.append(rng.choice(np.flatnonzero(labels == c), q, replace=False))
    return np.sort(np.concatenate(out))


def cached_features(enc: AlignedEncoder, tag: str, view_lm: np.ndarray, key: str, expr: ExpressionEncoder | None = None,
                    view_bs: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, mirrored-face features), each (N, V, D), of the faces' V renderings
    (view_lm: (N, V, 478, 3) normalised, view_bs (N, V, 52); V = 1 without views): the encoder
    feature, followed by the expression embedding when the model has one; cached on disk by the
    parts' weights + subset."""
    path = Path("runs/facephi/features") / f"{tag}_{key}.pt"
    if path.is_file():
        d = torch.load(path)
        if d["feat"].dim() == 3:
            return d["feat"], d["mirror"]
    n, v = view_lm.shape[:2]
    lm = view_lm.reshape(n * v, *view_lm.shape[2:]).astype(np.float32)
    bs = view_bs.reshape(n * v, -1).astype(np.float32) if expr is not None else None
    feat = projector_input(enc, expr, lm, bs, desc="encoder features").view(n, v, -1)
    mirror = projector_input(enc, expr, lm, bs, mirror=True, desc="mirrored features").view(n, v, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"feat": feat, "mirror": mirror}, path)
    return feat, mirror


def stage_data(enc: AlignedEncoder, train, stage: int, n_images: int, seed: int, views: bool, key: str,
               expr: ExpressionEncoder | None = None):
    """(picked training faces, their features, mirrored features, found mask (N, V)) for a stage:
    `n_images` faces (0 = all) stratified by class with the stage's seed, features cached by `key`."""
    faces = np.flatnonzero(train.found_any)
    pick = faces[stratified(train.labels[faces], n_images, seed + stage)]
    if views:
        feats, mirror = cached_features(enc, f"train_s{stage}_{len(pick)}_views", train.view_landmarks[pick], key, expr,
                                        train.view_blendshapes[pick])
        return pick, feats, mirror, torch.as_tensor(train.view_found[pick])
    feats, mirror = cached_features(enc, f"train_s{stage}_{len(pick)}", train.norm_landmarks[pick][:, None], key, expr,
                                    train.blendshapes[pick][:, None])
    return pick, feats, mirror, torch.ones(len(pick), 1, dtype=torch.bool)


def sample_features(feats: torch.Tensor, mirror: torch.Tensor, found: torch.Tensor, idx: torch.Tensor,
                    gen: torch.Generator) -> torch.Tensor:
    """(B, 256) training inputs: per face a random side (original or mirrored) and the mean feature of a
    random non-empty subset of the renderings in which it was found (one rendering up to all of them:
    what the runtime's pooling over a face's last frames gives)."""
    b = len(idx)
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None], mirror[idx], feats[idx])  # (B, V, 256)
    ok = found[idx]
    keep = ok & (torch.rand(ok.shape, generator=gen) < torch.rand(b, 1, generator=gen))
    one = pick_found_views(ok, gen)
    keep[torch.arange(b), one] = True  # at least one rendering
    return mean_over_found(x, keep)


def lr_at(step: int, total: int, base: float, warmup: int = 10) -> float:
    return base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))


def run_stage(stage: int, model: FacePhi, feats, mirror, found, labels, classes, scfg: dict, ckpt_dir: Path, resume: bool,
              seed: int, llm_grad: bool, bf16: bool) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=scfg["lr"], weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed + stage)
    rng = np.random.default_rng(seed + stage)
    ckpt = ckpt_dir / f"stage{stage}.pt"
    start, losses = 0, []
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if resume and ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["trainable"], strict=False)
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["gen"])
        rng.bit_generator.state = st["rng"]
        start, losses = st["step"], st["losses"]
        print(f"stage {stage}: resumed at step {start}", flush=True)
    steps, bsz, every = scfg["steps"], scfg["batch_size"], scfg.get("checkpoint_every", 25)
    model.train()
    if model.encoder is not None:
        model.encoder.eval()
    bar = tqdm(range(start, steps), desc=f"stage {stage}", initial=start, total=steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, scfg["lr"])
        idx = torch.randint(len(feats), (bsz,), generator=gen)
        x = sample_features(feats, mirror, found, idx, gen).to(model.device)
        instruction = prompts.INSTRUCTIONS[rng.integers(len(prompts.INSTRUCTIONS))]
        answers = [prompts.answers_for(classes[int(labels[i])])[rng.integers(10)] for i in idx]
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x, instruction, answers, llm_grad=llm_grad)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if (step + 1) % every == 0 or step + 1 == steps:
            state = {n: p.detach() for n, p in model.named_parameters() if n in trainable}
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"trainable": state, "optimizer": opt.state_dict(), "gen": gen.get_state(),
                        "rng": rng.bit_generator.state, "step": step + 1, "losses": losses}, ckpt)
    model.eval()
    return losses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="training/configs/facephi_fer7.yaml")
    ap.add_argument("--encoder", default=str(shipped("models") / "facephi" / "encoder"))
    ap.add_argument("--out", default=str(shipped("models") / "facephi"))
    ap.add_argument("--no-alignment", action="store_true", help="ablation: a randomly initialised, frozen encoder")
    ap.add_argument("--stages", default="12", help="'1', '2' or '12'")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--steps", type=int, help="override both stages' step counts (quick runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="override train_precision in the config "
                    "(auto: bfloat16 autocast on CUDA and on CPUs with bf16 instructions; weights stay float32)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    full = yaml.safe_load(Path(args.config).read_text())
    classes, lcfg = full["classes"], full["llm"]
    out = Path(args.out)
    name = out.name if out.name != "facephi" else "default"
    ckpt_dir = Path("runs/facephi") / name
    dev = device_for(args.device)

    if args.no_alignment:
        enc = AlignedEncoder(PointMLPConfig.from_dict(full["align"]["encoder"]), 384, classes)
        save_encoder(enc.eval(), out / "encoder", {"note": "randomly initialised, not aligned (ablation)"})
    else:
        enc, _ = load_encoder(args.encoder)
        if Path(args.encoder).resolve() != (out / "encoder").resolve():  # the output folder is a whole model
            shutil.copytree(args.encoder, out / "encoder", dirs_exist_ok=True)
    # the expression model (llm.expression: a per-frame emotion model's folder; empty = none) is copied
    # into the output folder too, so the FacePhi model keeps reading the embedding it was trained on
    expr = None
    shutil.rmtree(out / "expression", ignore_errors=True)
    if lcfg.get("expression"):
        shutil.copytree(lcfg["expression"], out / "expression")
        expr = ExpressionEncoder(out / "expression")
        print(f"expression input: {lcfg['expression']} ({expr.dim}-d embedding)", flush=True)
    enc_key = feature_key(out, args.no_alignment)
    views = bool(full.get("views"))
    train = load_split(full["features"], "train", classes, views=views)
    bf16 = {"auto": pick_dtype("auto", dev) == torch.bfloat16, "bf16": True, "fp32": False}[args.precision or full.get("train_precision", "fp32")]
    print(f"training on {dev}, {'bfloat16 autocast' if bf16 else 'float32'}, {'renderings pooled' if views else 'one rendering'}", flush=True)
    t0 = time.time()
    llm, tok = load_llm(lcfg["model"], device=str(dev))
    for p in llm.parameters():
        p.requires_grad_(False)
    edim = expr.dim if expr is not None else 0
    pcfg = ProjectorConfig(in_dim=enc.out_dim + edim, expression_dim=edim, hidden=lcfg["projector_hidden"], out_dim=llm.get_input_embeddings().embedding_dim,
                           face_tokens=lcfg["face_tokens"], classes=classes, llm=lcfg["model"])
    model = FacePhi(llm, tok, Projector(pcfg).to(dev))
    meta = {"train_config": args.config, "encoder_key": encoder_key(out, args.no_alignment),
            "feature_key": enc_key, "expression": lcfg.get("expression") or None,
            "expression_key": weights_key(out / "expression") if expr is not None else None, "no_alignment": args.no_alignment,
            "command": command_line("python -m training.train_facephi", argv)}
    history = {}
    for stage in (1, 2):
        if str(stage) not in args.stages:
            continue
        scfg = dict(full[f"stage{stage}"])
        if args.steps:
            scfg["steps"] = args.steps
        pick, feats, mirror, found = stage_data(enc, train, stage, scfg.get("train_images", 0), args.seed, views, enc_key, expr)
        labels = train.labels[pick]
        if stage == 2:
            if scfg.get("full_finetune"):
                for p in model.llm.parameters():
                    p.requires_grad_(True)
            else:
                from peft import LoraConfig, get_peft_model
                lc = lcfg["lora"]
                model.llm = get_peft_model(model.llm, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], lora_dropout=lc["dropout"],
                                                                 target_modules=lc["target_modules"], task_type="CAUSAL_LM"))
            model.clear_prefix_cache()
        elif (ckpt_dir / "stage2.pt").exists() and not args.resume:
            (ckpt_dir / "stage2.pt").unlink()  # a fresh stage 1 invalidates an old stage 2
        losses = run_stage(stage, model, feats, mirror, found, labels, classes, scfg, ckpt_dir, args.resume,
                           args.seed, llm_grad=stage == 2, bf16=bf16)
        history[f"stage{stage}"] = {"steps": scfg["steps"], "batch_size": scfg["batch_size"], "lr": scfg["lr"],
                                    "train_images": int(len(pick)), "views": views, "bf16_autocast": bf16, "loss_first10": float(np.mean(losses[:10])),
                                    "loss_last10": float(np.mean(losses[-10:]))}
        print(f"stage {stage}: loss {history[f'stage{stage}']['loss_first10']:.3f} -> {history[f'stage{stage}']['loss_last10']:.3f}")
    meta["history"] = history
    meta["minutes"] = (time.time() - t0) / 60
    save_projector(model.projector, out / "projector", meta)
    if "2" in args.stages:
        if hasattr(model.llm, "save_pretrained") and hasattr(model.llm, "peft_config"):
            model.llm.save_pretrained(out / "adapter")
            (out / "adapter" / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
        else:
            model.llm.save_pretrained(out / "llm")  # full fine-tune
    print(f"wrote {out} in {meta['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
