"""FacePhi: landmark encoder -> MLP projector -> landmark token(s) in the prompt of a causal LLM.

    landmarks (478x3) -> PointMLP (aligned, frozen) -> 256-d -+-> projector -> F x d_model embeddings
    landmarks + blendshapes -> per-frame emotion model (frozen) -> 256-d -+   (expression.py; optional)
    prompt = chat(system, instruction with <face>)  ->  [prefix] [F face embeddings] [suffix] [answer]

The loss covers only the answer tokens and the end-of-turn token (as in the FacePhi paper). The
text before <face> is the same for every face of an instruction, so its key/value cache is
computed once (`PrefixCache`) and shared: in training by every face of a batch, at inference by
every face the robot ever sees. Any Hugging Face causal LM works (SmolLM2, Phi-2, ...); models
without a chat template get a plain "Instruct:/Output:" layout.

Modes:
  - `class_probs`: scores every class's answer in one batched forward pass -> a distribution;
  - `generate`: greedy decoding of a free answer (keyword-matched for the paper's metric);
  - `describe_va`: the LLM (adapter switched off) writes a short description from valence,
    arousal, the label and the strongest blendshapes given as text.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import prompts
from .files import load_into, load_part, save_part
from ..models.lstm import ModelFileError

REBUILD = "python -m training.train_facephi"


@dataclass
class ProjectorConfig:
    in_dim: int = 256  # encoder feature + expression embedding
    expression_dim: int = 0  # the last expression_dim inputs come from expression.py (0: the encoder alone)
    hidden: int = 1024
    out_dim: int = 576  # the LLM's embedding width
    face_tokens: int = 1
    classes: list = field(default_factory=list)
    llm: str = "smollm2"


class Projector(nn.Module):
    """Two-layer MLP (GELU) from the encoder feature (and the expression embedding) to `face_tokens`
    LLM input embeddings."""

    def __init__(self, cfg: ProjectorConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(nn.Linear(cfg.in_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.out_dim * cfg.face_tokens))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).view(len(feat), self.cfg.face_tokens, self.cfg.out_dim)


def save_projector(p: Projector, folder: str | Path, extra: dict | None = None) -> Path:
    return save_part(folder, p.state_dict(), {"arch": "Projector", "config": asdict(p.cfg), **(extra or {})})


def load_projector(folder: str | Path) -> tuple[Projector, dict]:
    state, meta = load_part(folder, "FacePhi projector", REBUILD)
    try:
        p = Projector(ProjectorConfig(**meta["config"]))
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"FacePhi projector metadata in {folder} is incomplete ({type(e).__name__}: {e})") from None
    load_into(p, state, "FacePhi projector", folder)
    return p.eval(), meta


def chat_text(tokenizer, instruction: str, system: str = prompts.SYSTEM) -> str:
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": instruction}]
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return f"{system}\nInstruct: {instruction}\nOutput:"


def end_token(tokenizer) -> int:
    return tokenizer.eos_token_id


class PrefixCache:
    """Key/value tensors of a constant token prefix (batch 1), expandable to any batch."""

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int):
        self.kv, self.length = kv, length

    @classmethod
    def from_output(cls, cache, length: int) -> "PrefixCache":
        if hasattr(cache, "layers"):
            kv = [(layer.keys, layer.values) for layer in cache.layers]
        else:  # older transformers
            kv = [(k, v) for k, v in zip(cache.key_cache, cache.value_cache)]
        return cls(kv, length)

    def expand(self, batch: int | None = None):
        """A fresh DynamicCache holding these tensors, broadcast to `batch` (default: as stored)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        for i, (k, v) in enumerate(self.kv):
            if batch is not None and k.shape[0] != batch:
                k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
            cache.update(k, v, i)
        return cache


class FacePhi(nn.Module):
    def __init__(self, llm, tokenizer, projector: Projector, encoder: nn.Module | None = None):
        super().__init__()
        self.llm, self.tok, self.projector, self.encoder = llm, tokenizer, projector, encoder
        self.classes = list(projector.cfg.classes)
        self._templates: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._prefix: dict[str, PrefixCache] = {}
        if projector.cfg.out_dim != self.embed_tokens.embedding_dim:
            raise ModelFileError(f"projector outputs {projector.cfg.out_dim}-d tokens but the LLM expects "
                                 f"{self.embed_tokens.embedding_dim}-d: retrain the projector for this LLM")

    # -- prompt pieces ---------------------------------------------------------------------
    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def template_ids(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids before and after <face> in the chat prompt of `instruction`."""
        if instruction not in self._templates:
            text = chat_text(self.tok, instruction)
            if text.count(prompts.FACE_TOKEN) != 1:
                raise ValueError(f"instruction must hold {prompts.FACE_TOKEN} exactly once: {instruction!r}")
            before, after = text.split(prompts.FACE_TOKEN)
            pre = self.tok(before, add_special_tokens=True, return_tensors="pt").input_ids
            post = self.tok(after, add_special_tokens=False, return_tensors="pt").input_ids
            self._templates[instruction] = (pre.to(self.device), post.to(self.device))
        return self._templates[instruction]

    def answer_ids(self, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) right-padded answer tokens ending with the end-of-turn token, and their mask."""
        lead = "" if getattr(self.tok, "chat_template", None) else " "
        ids = [self.tok(lead + a, add_special_tokens=False).input_ids + [end_token(self.tok)] for a in answers]
        n = max(map(len, ids))
        out = torch.full((len(ids), n), end_token(self.tok), dtype=torch.long)
        mask = torch.zeros(len(ids), n, dtype=torch.bool)
        for i, t in enumerate(ids):
            out[i, :len(t)] = torch.tensor(t)
            mask[i, :len(t)] = True
        return out.to(self.device), mask.to(self.device)

    def prefix_cache(self, instruction: str, grad: bool = False) -> PrefixCache:
        """KV of the prompt before <face>; cached when no gradient flows through the LLM."""
        if not grad and instruction in self._prefix:
            return self._prefix[instruction]
        pre, _ = self.template_ids(instruction)
        with torch.no_grad() if not grad else nullcontext():
            out = self.llm(input_ids=pre, use_cache=True)
        pc = PrefixCache.from_output(out.past_key_values, pre.shape[1])
        if not grad:
            self._prefix[instruction] = pc
        return pc

    def clear_prefix_cache(self) -> None:
        """Call after the LLM's weights change (training)."""
        self._prefix.clear()

    def face_embeddings(self, feats: torch.Tensor) -> torch.Tensor:
        return self.projector(feats.to(self.device)).to(self.embed_tokens.weight.dtype)

    # -- training -------------------------------------------------------------------------
    def loss(self, feats: torch.Tensor, instruction: str, answers: list[str], llm_grad: bool = False) -> torch.Tensor:
        """Mean cross-entropy over answer tokens (+ end token) for faces sharing one instruction."""
        b = len(feats)
        pc = self.prefix_cache(instruction, grad=llm_grad)
        _, post = self.template_ids(instruction)
        ans, mask = self.answer_ids(answers)
        emb = self.embed_tokens
        x = torch.cat([self.face_embeddings(feats), emb(post).expand(b, -1, -1), emb(ans)], 1)
        keep = ans.shape[1] + 1
        out = self.llm(inputs_embeds=x, past_key_values=pc.expand(b), use_cache=False, logits_to_keep=keep)
        logits = out.logits[:, :-1].float()  # position j predicts answer token j
        return F.cross_entropy(logits[mask], ans[mask])

    # -- inference ------------------------------------------------------------------------
    def _context(self, feats: torch.Tensor, instruction: str):
        """Run face tokens + suffix after the cached prefix: (cache, last logits)."""
        b = len(feats)
        pc = self.prefix_cache(instruction)
        _, post = self.template_ids(instruction)
        x = torch.cat([self.face_embeddings(feats), self.embed_tokens(post).expand(b, -1, -1)], 1)
        out = self.llm(inputs_embeds=x, past_key_values=pc.expand(b), use_cache=True, logits_to_keep=1)
        return out.past_key_values, out.logits[:, -1].float()

    @torch.no_grad()
    def class_probs(self, feats: torch.Tensor, instruction: str | None = None) -> torch.Tensor:
        """(B, C) distribution over classes from the likelihood of each class's answer.

        One forward pass after the cached prefix: the face token(s), the rest of the prompt, the
        answers' common first tokens ("The person looks": equally likely for every class, so they
        cancel in the softmax) and then the differing tails of all C answers side by side, each
        tail attending to the context and to itself only (a tree-shaped attention mask)."""
        instruction = instruction or prompts.INSTRUCTIONS[prompts.DEFAULT_INSTRUCTION]
        b, c = len(feats), len(self.classes)
        ans, mask = self.answer_ids([prompts.answers_for(k)[prompts.LIKELIHOOD_ANSWER] for k in self.classes])
        common = 0
        while common < ans.shape[1] - 1 and mask[:, common + 1].all() and (ans[:, common] == ans[0, common]).all():
            common += 1
        tails = [ans[k, common:int(mask[k].sum())] for k in range(c)]  # each ends with the end token
        pc = self.prefix_cache(instruction)
        _, post = self.template_ids(instruction)
        ctx_ids = torch.cat([post[0], ans[0, :common]])
        tail_in = torch.cat([t[:-1] for t in tails])  # a tail's last token is only predicted
        e = self.embed_tokens
        x = torch.cat([self.face_embeddings(feats), e(ctx_ids).expand(b, -1, -1), e(tail_in).expand(b, -1, -1)], 1)
        n0, p = x.shape[1] - len(tail_in), pc.length
        n = x.shape[1]
        allowed = torch.zeros(n, p + n, dtype=torch.bool, device=self.device)
        allowed[:, :p] = True
        allowed[:, p:p + n0] = True  # every tail sees the whole context ...
        allowed[:n0, p:p + n0] = torch.ones(n0, n0, dtype=torch.bool, device=self.device).tril()  # ... which is causal
        pos = list(range(p, p + n0))
        pred_rows = []  # per class: the rows whose logits predict its tail tokens
        start = n0
        for t in tails:
            k = len(t) - 1
            rows = list(range(start, start + k))
            for j, r in enumerate(rows):
                allowed[r, p + start:p + start + j + 1] = True
            pos += list(range(p + n0, p + n0 + k))
            pred_rows.append([n0 - 1] + rows)
            start += k
        dtype = self.embed_tokens.weight.dtype
        attn = torch.zeros(n, p + n, dtype=dtype, device=self.device).masked_fill(~allowed, torch.finfo(dtype).min)
        keep = torch.tensor(sorted({r for rows in pred_rows for r in rows}), device=self.device)
        where = {int(r): i for i, r in enumerate(keep)}  # only these rows need the vocabulary projection
        out = self.llm(inputs_embeds=x, past_key_values=pc.expand(b), attention_mask=attn[None, None].expand(b, 1, -1, -1),
                       position_ids=torch.tensor(pos, device=self.device)[None].expand(b, -1), use_cache=False,
                       logits_to_keep=keep)
        logp = out.logits.float().log_softmax(-1)  # (B, len(keep), V)
        scores = torch.stack([logp[:, [where[r] for r in rows], :].gather(-1, t[None, :, None].expand(b, -1, 1))[..., 0].sum(1)
                              for rows, t in zip(pred_rows, tails)], 1)
        return scores.softmax(-1)

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, instruction: str | None = None, max_new_tokens: int = 16) -> list[str]:
        """Greedy answers, batched over faces, reusing the prefix cache."""
        instruction = instruction or prompts.INSTRUCTIONS[prompts.DEFAULT_INSTRUCTION]
        cache, last = self._context(feats, instruction)
        return self._greedy(cache, last, max_new_tokens)

    def _greedy(self, cache, last: torch.Tensor, max_new_tokens: int, one_sentence: bool = False) -> list[str]:
        """Greedy decoding; with one_sentence (batch of one), stop at the first complete sentence."""
        b, eos = len(last), end_token(self.tok)
        done = torch.zeros(b, dtype=torch.bool, device=last.device)
        toks = []
        for _ in range(max_new_tokens):
            nxt = last.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            toks.append(nxt)
            done |= nxt == eos
            if one_sentence and prompts.ends_sentence(self.tok.decode(torch.stack(toks, 1)[0].tolist(),
                                                                       skip_special_tokens=True)):
                break
            if done.all():
                break
            out = self.llm(input_ids=nxt[:, None], past_key_values=cache, use_cache=True)
            cache, last = out.past_key_values, out.logits[:, -1].float()
        seq = torch.stack(toks, 1).tolist()
        return [self.tok.decode([t for t in s if t != eos], skip_special_tokens=True).strip() for s in seq]

    @torch.no_grad()
    def describe_va(self, valence: float, arousal: float, label: str, blendshapes: dict[str, float],
                    max_new_tokens: int = 40) -> str:
        """Free-text description from valence/arousal, label and strongest movements (adapter off):
        one sentence, decoding stops at its end; a reply cut by max_new_tokens is trimmed back to
        its last complete sentence."""
        text = chat_text(self.tok, prompts.VA_INSTRUCTION.format(
            valence=valence, arousal=arousal, label=label, movements=prompts.movement_text(blendshapes)),
            system=prompts.VA_SYSTEM)
        ids = self.tok(text, add_special_tokens=True, return_tensors="pt").input_ids.to(self.device)
        ctx = self.llm.disable_adapter() if hasattr(self.llm, "disable_adapter") else nullcontext()
        with ctx:
            out = self.llm(input_ids=ids, use_cache=True, logits_to_keep=1)
            text = self._greedy(out.past_key_values, out.logits[:, -1].float(), max_new_tokens, one_sentence=True)[0]
        return prompts.complete_sentences(text)
