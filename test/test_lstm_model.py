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
