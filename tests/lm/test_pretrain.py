"""Pre-training of the offline base model: cache folder, sealed manifest, bit-identical reruns, loading.

Tiny options (vocab 300, hidden 32, 2 layers, a few steps) on a slice of the real train-split text.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from safetensors.torch import load_file

from eggroll_ndcg import atomic
from eggroll_ndcg.data.sources import OfflineError
from eggroll_ndcg.data.textfiles import DataError
from eggroll_ndcg.lm import pretrain as pretrain_module
from eggroll_ndcg.lm.corpus import PROMPT_SUFFIX, pretraining_text
from eggroll_ndcg.lm.pretrain import (PretrainOptions, _learning_rate, base_model_dir, load_model, pretrain,
                                      read_manifest, token_windows)

TINY = PretrainOptions(vocab_size=300, hidden_size=32, layers=2, heads=4, kv_heads=2, intermediate_size=64,
                       seq_len=32, batch_size=4, steps=3, warmup_steps=1, lr=1e-2, max_chars=20_000, seed=0)


@pytest.fixture(scope="module")
def texts():
    return pretraining_text()[:6]


@pytest.fixture(scope="module")
def built(tmp_path_factory, texts):
    root = tmp_path_factory.mktemp("cache")
    return root, pretrain(TINY, cache_root=root, progress=False, texts=texts)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_pretrain_writes_a_model_folder_with_tokenizer_and_sealed_manifest(built):
    root, folder = built
    assert folder == base_model_dir(TINY, root) and folder.is_dir()
    assert {"config.json", "model.safetensors", "tokenizer.json", "manifest.json"} <= {p.name for p in folder.iterdir()}
    manifest = read_manifest(folder)
    assert manifest["options"] == dataclasses.asdict(TINY)
    assert len(manifest["loss_curve"]) == TINY.steps and manifest["seconds"] > 0
    assert manifest["parameters"] == sum(t.numel() for t in _weights(folder).values())
    assert not list(folder.parent.glob(".*.tmp"))  # the staging folder was renamed away


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not(built, tmp_path, texts):
    _, folder = built
    again = pretrain(TINY, cache_root=tmp_path / "a", progress=False, texts=texts)
    first, second = _weights(folder), _weights(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert read_manifest(folder)["loss_curve"] == read_manifest(again)["loss_curve"]
    assert (folder / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()
    other = pretrain(dataclasses.replace(TINY, seed=1), cache_root=tmp_path / "b", progress=False, texts=texts)
    assert not all(torch.equal(first[k], _weights(other)[k]) for k in first)


def test_cached_folder_is_returned_without_training(built, monkeypatch, texts):
    root, folder = built
    monkeypatch.setattr(pretrain_module, "_train", lambda *a, **k: pytest.fail("retrained a cached model"))
    assert pretrain(TINY, cache_root=root, progress=False, texts=texts) == folder


def test_a_changed_file_is_detected_and_the_model_rebuilt(tmp_path, texts):
    folder = pretrain(TINY, cache_root=tmp_path, progress=False, texts=texts)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-8] + bytes(8))
    with pytest.raises(ValueError, match="changed"):
        read_manifest(folder)
    with pytest.warns(UserWarning, match="invalid"):
        rebuilt = pretrain(TINY, cache_root=tmp_path, progress=False, texts=texts)
    assert rebuilt.joinpath("model.safetensors").read_bytes() == original
    manifest = folder / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"seed": 0', b'"seed": 7'))
    with pytest.raises(ValueError, match="seal"):
        read_manifest(folder)


def test_options_change_the_cache_key():
    assert base_model_dir(TINY, "/c") != base_model_dir(dataclasses.replace(TINY, steps=4), "/c")
    assert base_model_dir(TINY, "/c") == base_model_dir(dataclasses.replace(TINY), "/c")
    assert base_model_dir(TINY, "/c").parent.name == "lm-base"


def test_training_lowers_the_loss(tmp_path, texts):
    options = dataclasses.replace(TINY, steps=25, warmup_steps=2, lr=2e-2)
    curve = read_manifest(pretrain(options, cache_root=tmp_path, progress=False, texts=texts))["loss_curve"]
    assert sum(curve[-5:]) / 5 < curve[0] - 0.5


def test_learning_rate_warms_up_then_decays_to_the_floor():
    options = dataclasses.replace(TINY, steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    rates = [_learning_rate(step, options) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 89 / 90)).item()))


def test_token_windows_concatenate_files_with_eos(micro_lm):
    _, tokenizer = micro_lm
    windows = token_windows(["def f(x):", "return x"], tokenizer, seq_len=3)
    stream = (tokenizer("def f(x):", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
              + tokenizer("return x", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    assert windows.shape == (len(stream) // 4, 4)
    assert windows.flatten().tolist() == stream[: windows.numel()]
    with pytest.raises(DataError):
        token_windows(["x"], tokenizer, seq_len=64)


def test_load_model_gives_eval_model_and_left_padding_tokenizer_that_generates(built):
    _, folder = built
    model, tokenizer = load_model(folder)
    assert not model.training and not model.config.tie_word_embeddings
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    prompts = ['def quote(s):' + PROMPT_SUFFIX, 'def f(a, b=1, *args, **kwargs):' + PROMPT_SUFFIX]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (2, batch["input_ids"].shape[1] + 5)
    assert tokenizer.decode(out[0, batch["input_ids"].shape[1]:]) != ""


def test_load_model_errors_are_one_line_and_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="lm pretrain") as missing:
        load_model(tmp_path / "no-model")
    assert "\n" not in str(missing.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(OfflineError, match="lm pretrain") as offline:
            load_model("no-such-org/no-such-model")
    assert "HF_HUB_OFFLINE" in str(offline.value) and "\n" not in str(offline.value)


def test_options_are_validated():
    with pytest.raises(ValueError, match="hidden_size"):
        PretrainOptions(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        PretrainOptions(vocab_size=100)


def test_sealed_manifest_uses_the_project_seal(built):
    _, folder = built
    body, sealed = atomic.parse_sealed_json((folder / "manifest.json").read_bytes())
    assert sealed and set(body["files"]) >= {"model.safetensors", "config.json", "tokenizer.json"}
