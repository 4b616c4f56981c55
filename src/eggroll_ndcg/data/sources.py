"""One registry of collections: a short name (or a path) in, a validated `Collection` out.

`resolve(name_or_path)` tries, in order:

1. a local folder: one written as a path (`./x`, `/data/x`), or a bare name that is a BEIR folder here (it
   has a corpus file; any other folder of that name, such as a run folder, does not shadow steps 2-4);
2. `stdlib-code`, the embedded default, built from the running Python's standard library (no download);
3. a folder `<data_dir>/<name>`, where `data_dir` is the argument, else `$EGGROLL_NDCG_DATA`;
4. a hub collection: the 13 NanoBEIR English tasks (`NanoMSMARCO`, `NanoSciFact`, ...) and `Ko-StrategyQA`.
   The first use downloads it with the `datasets` library and writes it as a BEIR folder under
   `<cache>/hub/<name>`; later uses (online or not) read that folder. Without a network (`HF_HUB_OFFLINE=1`,
   `HF_DATASETS_OFFLINE=1`, the hub unreachable within a few seconds, or `datasets` not installed) it fails
   at once with `OfflineError`, which says what to pass instead.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .beir import Collection, load_beir, write_beir
from .stdlib_code import NAME as STDLIB_CODE, cache_dir, load_stdlib_code

__all__ = [
    "OfflineError", "UnknownSourceError", "SourceInfo", "HubSource", "HUB_SOURCES", "resolve", "is_known_source",
    "list_sources", "data_dir_from_env", "data_dir_description", "hub_status",
]

DATA_ENV = "EGGROLL_NDCG_DATA"
HUB_PROBE_TIMEOUT_S = 5.0


class OfflineError(ConnectionError):
    """A hub collection was asked for, but the hub cannot be reached (or `datasets` is missing)."""


class UnknownSourceError(ValueError):
    """The name is neither a folder, nor a known collection."""


@dataclass(frozen=True)
class HubSource:
    """A collection on the Hugging Face hub in the BEIR layout (configs corpus / queries / qrels)."""

    name: str
    repo: str
    qrels_config: str  # the config that holds the judgments
    split_names: dict[str, str]  # hub qrels split -> our split name
    description: str


def _nano(task: str, about: str) -> HubSource:
    # NanoBEIR is an evaluation set: its single hub split is called "train", but it is the test split of the task.
    return HubSource(f"Nano{task}", f"zeta-alpha-ai/Nano{task}", "qrels", {"train": "test"}, f"NanoBEIR {about}")


HUB_SOURCES: dict[str, HubSource] = {
    source.name: source
    for source in (
        _nano("ArguAna", "ArguAna (counter-argument retrieval)"),
        _nano("ClimateFEVER", "Climate-FEVER (claim -> Wikipedia evidence)"),
        _nano("DBPedia", "DBPedia-entity (entity retrieval)"),
        _nano("FEVER", "FEVER (claim -> Wikipedia evidence)"),
        _nano("FiQA2018", "FiQA-2018 (financial QA)"),
        _nano("HotpotQA", "HotpotQA (multi-hop QA)"),
        _nano("MSMARCO", "MS MARCO passages (web search)"),
        _nano("NFCorpus", "NFCorpus (nutrition / medical)"),
        _nano("NQ", "Natural Questions"),
        _nano("QuoraRetrieval", "Quora duplicate questions"),
        _nano("SCIDOCS", "SCIDOCS (citation prediction)"),
        _nano("SciFact", "SciFact (scientific claims)"),
        _nano("Touche2020", "Touche-2020 (argument retrieval)"),
        HubSource(
            "Ko-StrategyQA",
            "taeminlee/Ko-StrategyQA",
            "default",
            {"dev": "test"},
            "Korean StrategyQA (multi-hop questions -> Wikipedia paragraphs), MTEB's dev split",
        ),
    )
}


@dataclass(frozen=True)
class SourceInfo:
    """One row of `list_sources`."""

    name: str
    kind: str  # "embedded", "local" or "hub"
    location: str  # folder, hub repo, or "built from the running Python"
    available: bool  # usable now without a download
    description: str = ""
    status: str = ""  # "ready", "download", or why a hub collection cannot be downloaded here


def data_dir_from_env(data_dir: str | Path | None = None) -> Path | None:
    """The folder of local collections: `data_dir`, else `$EGGROLL_NDCG_DATA`, else None."""
    configured = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    return Path(configured).expanduser() if configured else None


def data_dir_description(data_dir: str | Path | None = None) -> str:
    """Where short names are looked up, in words: the folder and where it was set, or that none is set."""
    folder = data_dir_from_env(data_dir)
    if folder is None:
        return f"no data folder is set (set {DATA_ENV} or pass --data-dir)"
    origin = "--data-dir" if data_dir is not None else f"${DATA_ENV}"
    missing = "" if folder.is_dir() else ", which does not exist"
    return f"the data folder {folder} (from {origin}){missing}"


def _is_beir_folder(path: Path) -> bool:
    has_corpus = (path / "corpus.jsonl").is_file() or (path / "corpus.jsonl.gz").is_file()
    return path.is_dir() and has_corpus and (path / "queries.jsonl").is_file()


def _hub_source(name: str) -> HubSource | None:
    lowered = name.lower()
    for source in HUB_SOURCES.values():
        if lowered in (source.name.lower(), source.repo.lower()):
            return source
    return None


def _hub_cache(source: HubSource) -> Path:
    return cache_dir() / "hub" / source.name


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _offline_error(source: HubSource, reason: str) -> OfflineError:
    return OfflineError(
        f"{source.name} comes from the Hugging Face hub ({source.repo}), which cannot be used here: {reason}. "
        f"Pass a local BEIR folder path instead (a folder with corpus.jsonl, queries.jsonl and qrels/), "
        f"or set {DATA_ENV} (or --data-dir) to a folder of BEIR collections and pass its name; "
        f"or use the embedded '{STDLIB_CODE}'."
    )


def _datasets_installed() -> bool:
    """True when the optional `datasets` package can be imported (found, not imported: that takes seconds)."""
    return importlib.util.find_spec("datasets") is not None


def _offline_variable() -> str | None:
    """The name of the set HF_HUB_OFFLINE / HF_DATASETS_OFFLINE variable, if any."""
    return next((name for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if _truthy(os.environ.get(name))), None)


def hub_status(source: HubSource) -> str:
    """How a hub collection can be used now, without touching the network: "ready" (cached), "download" (on
    first use), or what is missing ("offline: ... is set", "needs network + pip install eggroll-ndcg[hub]")."""
    if (_hub_cache(source) / "manifest.json").is_file():
        return "ready"
    if not _datasets_installed():
        return "needs network + pip install eggroll-ndcg[hub]"
    variable = _offline_variable()
    return f"offline: {variable} is set" if variable else "download"


def hub_unreachable(kind: str, repo: str) -> str | None:
    """Why the Hugging Face hub cannot serve `repo` now ("HF_HUB_OFFLINE is set", "... is unreachable (...)"),
    or None: one HEAD probe of `api/<kind>/<repo>` (kind "datasets" or "models"), a few seconds, no retries.
    An HTTP error answer counts as reachable (the download reports its own errors)."""
    variable = _offline_variable()
    if variable is not None:
        return f"{variable} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/{kind}/{repo}", method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=HUB_PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as error:
        return f"{endpoint} is unreachable ({getattr(error, 'reason', error)})"
    return None


def _check_hub_reachable(source: HubSource) -> None:
    """Fail fast (no retries, a few seconds at most) when the hub cannot be used."""
    if _offline_variable() is None and not _datasets_installed():
        raise _offline_error(source, "the 'datasets' package is not installed (pip install 'eggroll-ndcg[hub]')")
    reason = hub_unreachable("datasets", source.repo)
    if reason is not None:
        raise _offline_error(source, reason)


def _only_split(dataset_dict, config: str, repo: str):
    """The split of a corpus/queries DatasetDict (hub repos name it differently: 'corpus', 'train', 'ko', ...)."""
    if len(dataset_dict) == 1:
        return next(iter(dataset_dict.values()))
    if config in dataset_dict:
        return dataset_dict[config]
    raise ValueError(f"{repo} config {config!r}: expected one split, found {sorted(dataset_dict)}")


def _download_hub(source: HubSource, target: Path) -> None:
    """Download `source` with `datasets` and write it as a BEIR folder at `target` (atomically)."""
    import datasets
    from datasets import load_dataset

    corpus = _only_split(load_dataset(source.repo, "corpus"), "corpus", source.repo)
    queries = _only_split(load_dataset(source.repo, "queries"), "queries", source.repo)
    qrels = load_dataset(source.repo, source.qrels_config)
    write_beir(
        target,
        docs=((str(r["_id"]), r.get("title") or "", r["text"]) for r in corpus),
        queries=((str(r["_id"]), r["text"]) for r in queries),
        qrels={
            source.split_names.get(split, split): [
                (str(r["query-id"]), str(r["corpus-id"]), 1 if r.get("score") is None else int(r["score"]))
                for r in rows
            ]
            for split, rows in qrels.items()
        },
        manifest={
            "name": source.name,
            "hub_repo": source.repo,
            "qrels_config": source.qrels_config,
            "split_names": source.split_names,
            "datasets_version": datasets.__version__,
        },
    )


def _load_hub(source: HubSource) -> Collection:
    target = _hub_cache(source)
    if not (target / "manifest.json").is_file():
        _check_hub_reachable(source)
        _download_hub(source, target)
    return load_beir(target, name=source.name)


def resolve(name_or_path: str | Path, *, data_dir: str | Path | None = None) -> Collection:
    """The collection named by `name_or_path` (see the module docstring for the lookup order).

    Example:
        >>> resolve("stdlib-code")                                 # doctest: +SKIP
        >>> resolve("scifact", data_dir="../shared/datasets")     # doctest: +SKIP
        >>> resolve("/data/my_beir_folder")                        # doctest: +SKIP
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if _is_local_path(text):
        return load_beir(path)
    if text == STDLIB_CODE:
        return load_stdlib_code()
    folder = data_dir_from_env(data_dir)
    if folder is not None and "/" not in text and (folder / text).is_dir():
        return load_beir(folder / text, name=text)
    hub = _hub_source(text)
    if hub is not None:
        return _load_hub(hub)
    if path.is_dir():  # a bare name that is only a non-BEIR folder here: load_beir says what it lacks
        return load_beir(path)
    if folder is None:
        where = f"and {data_dir_description(data_dir)}"
    else:
        where = f"not in {data_dir_description(data_dir)}"
    known = ", ".join(info.name for info in list_sources(data_dir))
    raise UnknownSourceError(
        f"unknown collection {text!r}: not a folder here, {where}; not a hub collection either. Known: {known}"
    )


def _is_local_path(text: str) -> bool:
    """A folder that `resolve` loads as given: one written as a path, or a bare name that is a BEIR folder.

    A bare name such as "scifact" that is only some other folder in the working directory (a run folder, say)
    does not shadow the collection of that name in the data folder or on the hub.
    """
    path = Path(text).expanduser()
    if not path.is_dir():
        return False
    written_as_path = "/" in text or "\\" in text or text.startswith((".", "~"))
    return written_as_path or any((path / name).is_file() for name in ("corpus.jsonl", "corpus.jsonl.gz"))


def is_known_source(name_or_path: str | Path, *, data_dir: str | Path | None = None) -> bool:
    """True when `resolve` would find `name_or_path` (without loading or downloading anything)."""
    text = str(name_or_path)
    if Path(text).expanduser().is_dir() or text == STDLIB_CODE or _hub_source(text) is not None:
        return True
    folder = data_dir_from_env(data_dir)
    return folder is not None and "/" not in text and (folder / text).is_dir()


def list_sources(data_dir: str | Path | None = None) -> list[SourceInfo]:
    """Every collection `resolve` knows: embedded, local (in the data folder), hub (cached or not)."""
    infos = [SourceInfo(STDLIB_CODE, "embedded", "built from the running Python", True,
                        "code search: docstring summary -> function code", "ready")]
    folder = data_dir_from_env(data_dir)
    if folder is not None and folder.is_dir():
        for path in sorted(folder.iterdir()):
            if _is_beir_folder(path):
                infos.append(SourceInfo(path.name, "local", str(path), True, "BEIR folder", "ready"))
    for source in HUB_SOURCES.values():
        status = hub_status(source)
        infos.append(SourceInfo(source.name, "hub", source.repo, status == "ready", source.description, status))
    return infos
