"""Weight-space analysis on hand-made state dicts and on the micro Llama's parameter names."""

from __future__ import annotations

import math

import pytest
import torch

from eggroll_ndcg.lm import weight_space as ws


def _base() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(10, 4, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(4, 4, generator=g),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=g),
        "model.layers.1.mlp.down_proj.weight": torch.randn(4, 6, generator=g),
        "model.layers.1.input_layernorm.weight": torch.ones(4),
        "lm_head.weight": torch.randn(10, 4, generator=g),
        "model.rotary.steps": torch.arange(3),  # not floating: ignored
    }


def test_layer_groups_of_llama_names(micro_lm):
    model, _ = micro_lm
    groups = {name: ws.layer_group(name) for name, _ in model.named_parameters()}
    assert groups["model.embed_tokens.weight"] == "embedding"
    assert groups["lm_head.weight"] == "unembedding"
    assert groups["model.norm.weight"] == "norm"
    assert groups["model.layers.1.post_attention_layernorm.weight"] == "norm"
    assert groups["model.layers.0.self_attn.o_proj.weight"] == "attention"
    assert groups["model.layers.1.mlp.gate_proj.weight"] == "mlp"
    assert "other" not in groups.values()
    assert ws.layer_index("model.layers.1.mlp.gate_proj.weight") == 1 and ws.layer_index("lm_head.weight") is None


def test_share_sums_to_one_and_matches_explicit_norms():
    base = _base()
    tuned = {k: v.clone() for k, v in base.items()}
    tuned["model.layers.0.self_attn.q_proj.weight"] += 1.0     # ||Δ||² = 16
    tuned["model.layers.1.mlp.down_proj.weight"] += 2.0        # ||Δ||² = 96
    share = ws.update_share(base, tuned)
    assert "model.rotary.steps" not in share
    assert math.isclose(sum(share.values()), 1.0)
    assert share["model.layers.0.self_attn.q_proj.weight"] == pytest.approx(16 / 112, rel=1e-6)
    groups = ws.group_share(share)
    assert groups["attention"] == pytest.approx(16 / 112, rel=1e-6)
    assert groups["mlp"] == pytest.approx(96 / 112, rel=1e-6)
    assert groups["embedding"] == 0.0
    assert ws.layer_share(share) == pytest.approx({"0": 16 / 112, "1": 96 / 112})


def test_no_update_gives_nan_share():
    base = _base()
    assert all(math.isnan(v) for v in ws.update_share(base, base).values())


def test_rank_one_update_has_stable_rank_one_and_full_rank_more():
    base = _base()
    tuned = {k: v.clone() for k, v in base.items()}
    u, v = torch.randn(6, 1), torch.randn(1, 4)
    tuned["model.layers.0.mlp.up_proj.weight"] += u @ v
    tuned["lm_head.weight"] += torch.eye(10, 4)
    spectra = ws.update_spectra(base, tuned)
    rank_one = spectra["model.layers.0.mlp.up_proj.weight"]
    assert rank_one["stable_rank"] == pytest.approx(1.0, abs=1e-5)
    assert rank_one["singular_values"][0] == pytest.approx(float(u.norm() * v.norm()), rel=1e-5)
    assert spectra["lm_head.weight"]["stable_rank"] == pytest.approx(4.0)
    assert math.isnan(spectra["model.embed_tokens.weight"]["stable_rank"])
    assert "model.layers.1.input_layernorm.weight" not in spectra  # vectors have no spectrum


def test_cosines_identical_opposite_and_orthogonal_updates():
    base = _base()
    a = {k: v.clone() for k, v in base.items()}
    a["model.layers.0.self_attn.q_proj.weight"] += torch.eye(4)
    a["model.layers.1.mlp.down_proj.weight"] += 1.0
    assert ws.update_cosines(base, a, a)["all"] == pytest.approx(1.0)
    b = {k: v.clone() for k, v in base.items()}
    b["model.layers.0.self_attn.q_proj.weight"] -= torch.eye(4)
    b["model.layers.1.mlp.down_proj.weight"] += torch.ones(4, 6) * torch.tensor([1.0, -1.0] * 3)
    cos = ws.update_cosines(base, a, b)
    assert cos["parameters"]["model.layers.0.self_attn.q_proj.weight"] == pytest.approx(-1.0)
    assert cos["parameters"]["model.layers.1.mlp.down_proj.weight"] == pytest.approx(0.0, abs=1e-6)
    assert cos["layers"] == pytest.approx({"0": -1.0, "1": 0.0}, abs=1e-6)
    assert math.isnan(cos["parameters"]["lm_head.weight"])  # neither moved it
    dot = -4.0 + 0.0
    assert cos["all"] == pytest.approx(dot / math.sqrt((4 + 24) * (4 + 24)), abs=1e-6)


def test_interpolation_path_endpoints_and_barrier():
    a, b = {"w": torch.zeros(3)}, {"w": torch.ones(3)}
    # f(t) = -(t - 0.5)^2 * 4 ... a dip below the chord of 1 at t = 0.5 for f = 1 - 4 t (1 - t)
    path = ws.interpolation_path(a, b, lambda s: 1.0 - 4.0 * float(s["w"][0]) * (1 - float(s["w"][0])), points=5)
    assert path["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert path["value"][0] == 1.0 and path["value"][-1] == 1.0
    assert path["barrier"] == pytest.approx(1.0)
    flat = ws.interpolation_path(a, b, lambda s: float(s["w"].sum()), points=3)
    assert flat["barrier"] == pytest.approx(0.0, abs=1e-12)


def test_perturbation_robustness_relative_noise_and_reproducible():
    state = {"w": torch.full((50,), 2.0)}
    norm = float(state["w"].norm())
    curve = ws.perturbation_robustness(state, lambda s: -float((s["w"] - 2.0).norm()) / norm,
                                       scales=(0.0, 0.1, 0.5), draws=2, seed=3)
    assert curve["mean"] == pytest.approx([0.0, -0.1, -0.5], abs=1e-6)  # noise norm is exactly ε ||W||
    assert curve["drop"] == pytest.approx([0.0, 0.1, 0.5], abs=1e-6)
    again = ws.perturbation_robustness(state, lambda s: float(s["w"][0]), scales=(0.2,), draws=2, seed=3)
    assert again == ws.perturbation_robustness(state, lambda s: float(s["w"][0]), scales=(0.2,), draws=2, seed=3)


def test_plots_write_pngs(tmp_path):
    base = _base()
    tuned = {k: v + 0.1 for k, v in base.items() if v.is_floating_point()}
    fp = ws.footprint(base, tuned)
    analysis = {"footprints": {"es": fp, "grpo": fp}, "cosines": ws.update_cosines(base, tuned, tuned),
                "interpolation": {"t": [0, 1], "value": [1, 2], "barrier": 0.0},
                "robustness": {"es": {"scale": [0, 0.1], "mean": [1, 0.5], "std": [0, 0.1]}}}
    files = ws.plots(analysis, tmp_path / "plots")
    assert len(files) == 4 and all(f.stat().st_size > 1000 for f in files)


def test_state_keeps_a_tied_matrix_once_and_loads_back(micro_lm):
    import copy

    import torch
    from lm_fixtures import micro_model

    from eggroll_ndcg.lm.compare import _load, _state

    _, tokenizer = micro_lm
    tied = micro_model(len(tokenizer))
    tied.lm_head.weight = tied.model.embed_tokens.weight  # tie by hand: one tensor, two names
    state = _state(tied)
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state
    moved = {k: v + 1 for k, v in state.items()}
    work = copy.deepcopy(tied)
    _load(work, moved)
    assert torch.equal(work.lm_head.weight, moved["model.embed_tokens.weight"])
