"""Every command and every option says what it does; `--version` prints the installed version."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from eggroll_ndcg.cli import build_parser, main


def _parsers(parser: argparse.ArgumentParser, path: str = "eggroll-ndcg"):
    """(command path, parser) for the top-level parser and every sub-command, recursively."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


ALL = list(_parsers(build_parser()))


def test_the_commands_are_all_there():
    names = {path for path, _ in ALL}
    assert {"eggroll-ndcg train", "eggroll-ndcg eval", "eggroll-ndcg compare", "eggroll-ndcg encode",
            "eggroll-ndcg data info", "eggroll-ndcg data list"} <= names


@pytest.mark.parametrize("path,parser", ALL, ids=[path for path, _ in ALL])
def test_every_option_and_argument_has_help(path, parser):
    missing = [action.option_strings[0] if action.option_strings else action.dest
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction)
               and (action.help is None or not str(action.help).strip() or action.help == argparse.SUPPRESS)]
    assert not missing, f"{path}: no help for {missing}"


@pytest.mark.parametrize("path,parser", ALL[1:], ids=[path for path, _ in ALL[1:]])
def test_every_command_has_a_description(path, parser):
    assert parser.description and len(parser.description) > 20, path


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"eggroll-ndcg {version('eggroll-ndcg')}"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps help at the terminal width, hyphens included


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_compare_help_names_the_default_config(capsys):
    text = _help(capsys, "compare")
    assert "default: stdlib-code" in text and "run i of n" in text


def test_eval_help_describes_every_option(capsys):
    text = _help(capsys, "eval")
    for words in ("zero-shot encoder", "$EGGROLL_NDCG_DATA", "no progress bars", "cpu or cuda[:N]",
                  "eggroll-ndcg data list"):
        assert words in text, words


def test_set_help_points_to_the_field_list(capsys):
    assert "eggroll-ndcg train --list-fields" in _help(capsys, "train")


def test_a_near_miss_field_gets_did_you_mean(tmp_path, capsys):
    assert main(["train", "--task", "stdlib-code", "--set", "num_step=5", "--output-dir", str(tmp_path)]) == 2
    assert "did you mean 'num_steps'" in capsys.readouterr().err
