"""Distillation from the pixel teacher (training time only): the loss on a tiny batch, the stored
targets' checks, training with them, and that no node module can load the teacher."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facephi_ros.models.distill import TeacherTargets, distillation_loss

REPO = Path(__file__).resolve().parent.parent


def test_loss_is_cross_entropy_without_a_teacher_or_at_alpha_one():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 7, generator=g), torch.tensor([0, 3, 6, 2, 2])
    ce = F.cross_entropy(logits, labels)
    assert torch.allclose(distillation_loss(logits, labels, None), ce)
    assert torch.allclose(distillation_loss(logits, labels, torch.randn(5, 7, generator=g), alpha=1.0), ce)


def test_soft_term_by_hand_and_its_gradient_pulls_towards_the_teacher():
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 3.0, 0.0]])
    t = 2.0
    loss = distillation_loss(logits, torch.tensor([0]), teacher, alpha=0.0, temperature=t)
    p, q = F.softmax(teacher / t, -1), F.softmax(logits.detach() / t, -1)
    by_hand = float((p * (p.log() - q.log())).sum()) * t * t
    assert math.isclose(float(loss), by_hand, rel_tol=1e-5)
    loss.backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]  # descent raises the teacher's class, lowers the label's
    # identical student and teacher: nothing left to learn from the soft term
    same = distillation_loss(teacher.clone(), torch.tensor([1]), teacher, alpha=0.0)
    assert abs(float(same)) < 1e-6


def test_loss_refuses_bad_settings_and_shapes():
    x = torch.zeros(2, 7)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(x, torch.tensor([0, 1]), x, alpha=1.5)
    with pytest.raises(ValueError, match="do not match"):
        distillation_loss(x, torch.tensor([0, 1]), torch.zeros(2, 3))


def test_targets_follow_the_feature_files_images_and_classes(tmp_path):
    classes = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    paths = np.array([f"/d/{i}.jpg" for i in range(4)])
    logits = np.arange(28, dtype=np.float32).reshape(4, 7)
    f = TeacherTargets(logits, paths, classes, {"note": "test"}).save(tmp_path / "t.npz")
    # a three-class model on a subset of the images, in another order
    t = TeacherTargets.load(f, paths[[2, 0]], ["happy", "sad", "neutral"])
    np.testing.assert_array_equal(t.logits, logits[[2, 0]][:, [3, 5, 4]])
    with pytest.raises(ValueError, match="lack 1"):
        TeacherTargets.load(f, np.array(["/d/0.jpg", "/d/other.jpg"]), classes)
    with pytest.raises(ValueError, match="no logits for classes"):
        TeacherTargets.load(f, paths, ["happy", "contempt"])
    with pytest.raises(FileNotFoundError, match="teacher_targets"):
        TeacherTargets.load(tmp_path / "missing.npz", paths, classes)


def test_a_student_trained_on_teacher_targets_follows_them():
    """Labels say class 0 for every sample; the teacher says class 1 for half of them. With alpha 0
    the student learns the teacher's view, with alpha 1 the labels'."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    labels = torch.zeros(64, dtype=torch.long)
    teacher = torch.where((x[:, 0] > 0)[:, None], torch.tensor([0.0, 4.0]), torch.tensor([4.0, 0.0]))

    def fit(alpha):
        torch.manual_seed(0)
        net = torch.nn.Linear(4, 2)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(200):
            opt.zero_grad()
            distillation_loss(net(x), labels, teacher, alpha=alpha, temperature=1.0).backward()
            opt.step()
        return net(x).argmax(1)

    agree = lambda pred: float((pred == teacher.argmax(1)).float().mean())  # noqa: E731
    assert agree(fit(0.0)) > 0.9
    assert agree(fit(1.0)) < 0.6


def test_no_node_module_loads_the_teacher():
    """At run time the emotion models see landmarks and blendshapes only: no module under
    facephi_ros/nodes imports the teacher or the distillation code, directly or through a module
    it imports from the package. The one exception is the face-mesh node's opt-in appearance mode
    (issue 19), whose loader `_load_appearance` runs only with `appearance: true`; that it is not
    loaded otherwise is checked at run time in test_appearance.py. Even there distillation is
    never reached."""
    pkg = REPO / "facephi_ros"

    def imports(path: Path) -> set[str]:
        out = set()
        tree = ast.parse(path.read_text())
        mod_parts = list(path.relative_to(REPO).with_suffix("").parts)
        for node in list(ast.walk(tree)):
            if isinstance(node, ast.FunctionDef) and node.name == "_load_appearance":
                node.body = []  # the appearance mode's loader: checked below and at run time
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod_parts[:-node.level] if path.name != "__init__.py" else mod_parts[:len(mod_parts) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                out.add(prefix)
                out |= {f"{prefix}.{a.name}" for a in node.names}
        return {m for m in out if m.startswith("facephi_ros")}

    def file_of(mod: str) -> Path | None:
        p = REPO / Path(*mod.split("."))
        for f in (p.with_suffix(".py"), p / "__init__.py"):  # a module, a package, or a namespace folder (None)
            if f.is_file():
                return f
        return None

    seen: set[Path] = set()
    todo = sorted((pkg / "nodes").glob("*.py"))
    reached = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for mod in imports(f):
            reached.add(mod)
            g = file_of(mod)
            if g is not None and g not in seen:
                todo.append(g)
    assert "facephi_ros.nodes.emotion_node" in {".".join(p.relative_to(REPO).with_suffix("").parts) for p in seen}
    assert len(seen) > 10  # the walk really followed the nodes' imports
    bad = {m for m in reached if m.startswith(("facephi_ros.models.pixel_teacher", "facephi_ros.models.distill",
                                               "facephi_ros.appearance"))}
    assert not bad, f"node code reaches {bad}"
    loader = next(n for n in ast.walk(ast.parse((pkg / "nodes" / "face_mesh_node.py").read_text()))
                  if isinstance(n, ast.FunctionDef) and n.name == "_load_appearance")
    lazy = {n.module for n in ast.walk(loader) if isinstance(n, ast.ImportFrom)}
    assert "appearance.model" in lazy and not any("distill" in (m or "") for m in lazy), lazy
