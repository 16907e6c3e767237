"""The emotion model's input standardisation, its files, and an LSTM started from a per-frame model."""
import json

import numpy as np
import pytest
import torch

from facephi_ros.models.lstm import EmotionLSTM, LSTMConfig, ModelFileError, Standardize, load_model, save_model

CLASSES = ["happy", "sad", "neutral"]


def zscore_model(temporal: bool, seed: int = 0) -> EmotionLSTM:
    torch.manual_seed(seed)
    m = EmotionLSTM(LSTMConfig(classes=CLASSES, temporal=temporal, input_norm="zscore", window=1 if not temporal else 16))
    d = m.cfg.feature_config.dim
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.02, 0.1, d)
    std[:3] = 1e-6  # near-constant inputs, as some blendshapes are on FER2013
    m.encoder[0].set_stats(rng.normal(0, 0.1, d), std)
    return m.eval()


def test_near_constant_inputs_cannot_blow_up():
    s = Standardize(4)
    s.set_stats([0.0, 0.0, 1.0, 0.0], [1e-6, 0.5, 0.1, 0.05])
    assert torch.allclose(s.std, torch.tensor([0.01, 0.5, 0.1, 0.05]))
    out = s(torch.tensor([[0.05, 1.0, 1.2, 100.0]]))
    assert torch.allclose(out, torch.tensor([[5.0, 2.0, 2.0, 10.0]]))  # floored deviation; clamped at 10


def test_zscore_model_round_trips_with_its_statistics(tmp_path):
    m = zscore_model(temporal=True)
    save_model(m, tmp_path / "m")
    back, meta = load_model(tmp_path / "m")
    assert meta["config"]["input_norm"] == "zscore"
    assert torch.equal(back.encoder[0].mean, m.encoder[0].mean) and torch.equal(back.encoder[0].std, m.encoder[0].std)
    x = torch.randn(2, 5, m.cfg.feature_config.dim) * 0.05
    with torch.no_grad():
        assert torch.allclose(back(x), m(x), atol=1e-6)


def test_files_written_before_input_norm_existed_load_as_layernorm(tmp_path):
    m = EmotionLSTM(LSTMConfig(classes=CLASSES))
    save_model(m, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    del meta["config"]["input_norm"]
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    back, _ = load_model(tmp_path / "old")
    assert isinstance(back.encoder[0], torch.nn.LayerNorm)
    # the same weights declared as z-scored: a clear one-line refusal, not a silent mix-up
    meta["config"]["input_norm"] = "zscore"
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError) as e:
        load_model(tmp_path / "old")
    assert "do not match" in str(e.value) and "\n" not in str(e.value)


def test_an_lstm_started_from_a_per_frame_model_begins_where_it_ends(tmp_path):
    from training.train_lstm import init_from

    frame = zscore_model(temporal=False, seed=1)
    save_model(frame, tmp_path / "frame")
    lstm = EmotionLSTM(LSTMConfig(classes=CLASSES, temporal=True, input_norm="zscore"))
    fresh = EmotionLSTM(LSTMConfig(classes=CLASSES, temporal=True, input_norm="zscore"))
    init_from(lstm, tmp_path / "frame")
    x = torch.randn(64, 16, frame.cfg.feature_config.dim) * 0.05 + frame.encoder[0].mean
    with torch.no_grad():
        p_frame = torch.softmax(frame(x.reshape(-1, x.shape[-1])), -1).reshape(64, 16, -1)
        p_lstm = torch.softmax(lstm.eval()(x), -1)
        p_fresh = torch.softmax(fresh.eval()(x), -1)
    near = (p_lstm - p_frame).abs().max().item()
    assert near < 0.1, near  # the shrunken LSTM barely moves the per-frame predictions
    assert (p_fresh - p_frame).abs().max().item() > 3 * near  # what an untrained model would give instead
    assert torch.equal(lstm.encoder[0].std, frame.encoder[0].std)


def ensemble_of(temporal: bool, seeds=(0, 1)):
    from facephi_ros.models.lstm import EmotionEnsemble

    return EmotionEnsemble([zscore_model(temporal, seed=s) for s in seeds]).eval()


@pytest.mark.parametrize("temporal", [True, False])
def test_an_ensemble_gives_its_members_mean_probability_in_every_path(temporal):
    ens = ensemble_of(temporal)
    a, b = ens.members
    x = torch.randn(5, 16 if temporal else 1, a.cfg.feature_config.dim) * 0.05 + a.encoder[0].mean
    with torch.no_grad():
        mean = (torch.softmax(a(x), -1) + torch.softmax(b(x), -1)) / 2
        assert torch.allclose(torch.softmax(ens(x), -1), mean, atol=1e-6)
        assert (torch.softmax(a(x), -1) - mean).abs().max() > 0.01  # the members do differ
        z = ens.encode(x)
        assert z.shape[-1] == 2 * a.cfg.hidden
        if temporal:  # streaming one frame at a time (the node's path) ends where forward() does
            hc = None
            for t in range(x.shape[1]):
                logits, hc = ens.step(z[:, t], hc)
            assert len(hc) == 2 and torch.allclose(torch.softmax(logits, -1), mean[:, -1], atol=1e-5)
        else:
            assert torch.allclose(torch.softmax(ens.classify(z[:, 0]), -1), mean[:, 0], atol=1e-6)


def test_an_ensemble_file_is_half_size_and_loads_as_float32(tmp_path):
    from facephi_ros.models.lstm import EmotionEnsemble

    ens = ensemble_of(True)
    save_model(ens.members[0], tmp_path / "single")
    save_model(ens, tmp_path / "ens", half=True)
    single = (tmp_path / "single" / "weights.safetensors").stat().st_size
    both = (tmp_path / "ens" / "weights.safetensors").stat().st_size
    assert both < 1.05 * single  # two members in float16 take about one member's float32 room
    back, meta = load_model(tmp_path / "ens", expect_classes=CLASSES)
    assert isinstance(back, EmotionEnsemble) and meta["members"] == 2 and meta["weights_dtype"] == "float16"
    assert all(p.dtype == torch.float32 for p in back.parameters())
    assert torch.equal(back.members[1].encoder[0].std, ens.members[1].encoder[0].std)  # statistics kept exact
    x = torch.randn(8, 16, ens.cfg.feature_config.dim) * 0.05 + ens.members[0].encoder[0].mean
    with torch.no_grad():
        assert (torch.softmax(back(x), -1) - torch.softmax(ens(x), -1)).abs().max() < 2e-3


def test_members_of_different_designs_are_refused():
    from facephi_ros.models.lstm import EmotionEnsemble

    other = EmotionLSTM(LSTMConfig(classes=["happy", "sad", "surprise"], temporal=True, input_norm="zscore"))
    with pytest.raises(ValueError, match="share one configuration"):
        EmotionEnsemble([zscore_model(True), other])
    with pytest.raises(ValueError, match="at least two"):
        EmotionEnsemble([zscore_model(True)])


def test_the_estimator_runs_an_ensemble_as_the_mean_of_its_members(tmp_path):
    from facephi_ros.emotion.estimator import EmotionEstimator
    from facephi_ros.emotion.label_rule import ARGMAX

    ens = ensemble_of(True)
    for name, m in (("a", ens.members[0]), ("b", ens.members[1]), ("ens", ens)):
        save_model(m, tmp_path / name)
    est = {k: EmotionEstimator(tmp_path / k, label_rule=ARGMAX, hybrid_dir="none") for k in ("a", "b", "ens")}
    rng = np.random.default_rng(5)
    for k in range(24):  # past a window restart, so both staggered states are in use
        face = [(1, rng.random((478, 3)).astype(np.float32) * 0.2 + 0.4, rng.random(52).astype(np.float32), np.eye(4))]
        p = {n: e.update(face, 640, 480, t=k / 30, now=k / 30)[0].probs for n, e in est.items()}
        assert np.allclose(p["ens"], (p["a"] + p["b"]) / 2, atol=1e-5)
