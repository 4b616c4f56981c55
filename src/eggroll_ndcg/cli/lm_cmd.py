"""`eggroll-ndcg lm pretrain` and `eggroll-ndcg lm compare`: the language-model experiment (issue 18).

transformers / trl are imported inside the handlers, so `eggroll-ndcg --help` stays fast."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .errors import guarded


def _pretrain(args: argparse.Namespace) -> int:
    from ..lm.pretrain import PretrainOptions, pretrain, read_manifest
    from . import checks

    checks.check_device(args.device)
    overrides = {k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None}
    try:
        options = PretrainOptions(**overrides)
    except ValueError as error:
        raise checks.PreflightError(str(error)) from None
    folder = pretrain(options, cache_root=args.cache_root, rebuild=args.rebuild, progress=not args.quiet,
                      device=args.device or "cpu")
    manifest = read_manifest(folder)
    print(f"base model: {folder} ({manifest.get('parameters', '?')} parameters, final loss "
          f"{manifest.get('final_loss', '?')}, {manifest.get('seconds', '?')} s to train)", file=sys.stderr)
    print(folder)
    return 0


def _comma_separated(cast: type, kind: str, example: str):
    """An argparse `type=`: "a,b,c" -> a tuple of `cast` values; an argparse error (one line) otherwise."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(cast(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {kind}s, e.g. {example}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {kind}")
        return values

    return parse


_floats = _comma_separated(float, "number", "0.01,0.03")
_ints = _comma_separated(int, "integer", "0,1,2")


# flag -> LMCompareOptions field (None values keep the preset's)
_COMPARE_FLAGS = ("seeds", "es_sigmas", "es_learning_rates", "grpo_betas", "grpo_learning_rates", "population",
                  "num_generations", "prompts_per_step", "token_budget", "max_steps", "max_new_tokens",
                  "train_prompts", "val_prompts", "test_prompts", "kl_samples", "retrieval_encoder")


def _compare(args: argparse.Namespace) -> int:
    from ..lm.compare import LMCompareOptions, run_compare
    from . import checks

    checks.check_device(args.device)
    checks.check_writable_dir(args.out, what="--out")
    overrides = {name: getattr(args, name) for name in _COMPARE_FLAGS if getattr(args, name) is not None}
    overrides.update(model=args.model, cache_root=args.cache_root, device=args.device or "cpu")
    for name in ("population", "num_generations", "prompts_per_step", "token_budget", "max_steps", "max_new_tokens",
                 "train_prompts", "val_prompts", "test_prompts", "kl_samples"):
        if name in overrides and overrides[name] < (2 if name in ("population", "test_prompts", "num_generations") else 1):
            raise checks.PreflightError(f"--{name.replace('_', '-')} {overrides[name]}: too small")
    if args.model is None and args.quick:
        raise checks.PreflightError("--quick needs --model (a small local folder); the default base model "
                                    "comes from `eggroll-ndcg lm pretrain`")
    options = LMCompareOptions.quick(**overrides) if args.quick else LMCompareOptions(**overrides)
    results = run_compare(options, args.out, progress=not args.quiet)
    table = results["table"]
    print("method  train-reward  test-conciseness  test-retrieval  test-KL", file=sys.stderr)
    for method, row in table.items():
        cells = [row.get(k, [float("nan")])[0] for k in ("train/reward", "test/conciseness",
                                                         "test/retrieval_ndcg@10", "test/kl_to_base")]
        print(f"{method:6s}  " + "  ".join(f"{c:12.4f}" for c in cells), file=sys.stderr)
    print(f"wrote {args.out}/results.json, results.md, plots/, models/", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lm", help="ES vs GRPO on a causal language model (conciseness task on stdlib docstrings)",
        description="Pre-train the offline base model, then compare EGGROLL ES and TRL GRPO on the conciseness "
        "task with held-out judges and weight-space analysis. See docs/language_model.md.")
    commands = parser.add_subparsers(dest="lm_command", required=True)

    pre = commands.add_parser("pretrain", help="train (or find cached) the tiny offline base model",
                              description="Train a byte-level BPE and a tiny Llama on the train-split stdlib "
                              "source, cached like the embeddings; prints the model folder.")
    pre.add_argument("--cache-root", help="cache folder (default $EGGROLL_NDCG_CACHE or ~/.cache/eggroll-ndcg)")
    pre.add_argument("--rebuild", action="store_true", help="train again even if the cached model is valid")
    pre.add_argument("--steps", type=int, help="optimizer steps (default: PretrainOptions.steps)")
    pre.add_argument("--seed", type=int, help="seed (default 0)")
    pre.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=guarded(_pretrain))

    from ..lm.compare import LMCompareOptions

    defaults = LMCompareOptions()
    fields = {f.name for f in dataclasses.fields(LMCompareOptions)}
    assert set(_COMPARE_FLAGS) <= fields
    cmp = commands.add_parser("compare", help="base vs ES vs GRPO: sweep, seeds, held-out judges, weight space",
                              description="Sweep ES (sigma x lr) and GRPO (beta x lr) at seed 0 choosing on "
                              "validation prompts, run the chosen configs with every seed under the same "
                              "generated-token budget, judge on held-out test functions, write results.json, "
                              "results.md, plots/ and models/ into --out.")
    cmp.add_argument("--out", required=True, help="output folder (reruns reuse its finished models/)")
    cmp.add_argument("--model", help="local model folder or hub id (default: the `lm pretrain` model)")
    cmp.add_argument("--cache-root", help="cache of the default base model")
    cmp.add_argument("--seeds", type=_ints, help=f"comma-separated seeds (default {','.join(map(str, defaults.seeds))})")
    cmp.add_argument("--es-sigmas", type=_floats, help=f"ES sigma grid (default {defaults.es_sigmas})")
    cmp.add_argument("--es-learning-rates", type=_floats, help=f"ES lr grid (default {defaults.es_learning_rates})")
    cmp.add_argument("--grpo-betas", type=_floats, help=f"GRPO KL beta grid (default {defaults.grpo_betas})")
    cmp.add_argument("--grpo-learning-rates", type=_floats,
                     help=f"GRPO lr grid (default {defaults.grpo_learning_rates})")
    cmp.add_argument("--population", type=int, help=f"ES population (default {defaults.population})")
    cmp.add_argument("--num-generations", type=int, help=f"GRPO group size (default {defaults.num_generations})")
    cmp.add_argument("--prompts-per-step", type=int, help=f"prompts per step (default {defaults.prompts_per_step})")
    cmp.add_argument("--token-budget", type=int,
                     help=f"generated tokens per training run (default {defaults.token_budget})")
    cmp.add_argument("--max-steps", type=int, help=f"step cap per run (default {defaults.max_steps})")
    cmp.add_argument("--max-new-tokens", type=int, help=f"new tokens per generation (default {defaults.max_new_tokens})")
    cmp.add_argument("--train-prompts", type=int, help=f"training functions (default {defaults.train_prompts})")
    cmp.add_argument("--val-prompts", type=int, help=f"validation functions (default {defaults.val_prompts})")
    cmp.add_argument("--test-prompts", type=int, help=f"test functions (default {defaults.test_prompts})")
    cmp.add_argument("--kl-samples", type=int, help=f"samples per prompt of the KL (default {defaults.kl_samples})")
    cmp.add_argument("--retrieval-encoder", help=f"encoder of the retrieval judge (default {defaults.retrieval_encoder})")
    cmp.add_argument("--quick", action="store_true", help="the seconds-long preset of the tests (needs --model)")
    cmp.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    cmp.add_argument("--quiet", action="store_true", help="no progress bars")
    cmp.set_defaults(func=guarded(_compare))
