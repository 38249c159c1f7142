"""The README a newcomer reads in minutes, and the reference pages under docs/ it links to: every link
leads to a page, and every command, flag and params key the pages show in code exists."""

from __future__ import annotations

import dataclasses
import re

import pytest
from conftest import ROOT

PAGES = sorted((ROOT / "docs").glob("*.md"))
SECTIONS = ("prepare", "decode", "backbones", "encoders", "insight", "heads", "report")
# `key: value` in code that is not a params key: dvc.yaml's, video_features' and a failure's words
NOT_PARAMS = {"persist", "on_extraction", "worker", "decode_video"}
FILE_TYPES = {"py", "md", "yaml", "json", "csv"}
COMMAND = re.compile(r"(?:python -m (extract|heads|reelfeat)|\breelfeat) ([a-z][a-z-]*)((?: +[^\s|;&`]+)*)")


def code_of(text: str) -> list[str]:
    """The code in a markdown page: inline spans, fenced blocks and indented blocks."""
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    indented = [line[4:] for line in text.splitlines() if line.startswith("    ") and not line.strip().startswith("-")]
    return fenced + indented + re.findall(r"`([^`\n]+)`", text)


def parsers() -> dict[str, dict[str, object]]:
    """Each command line's subparsers by command name: extract, heads, and reelfeat (all of them)."""
    from extract.__main__ import add_commands as add_extract
    from extract.core.cli import command_parser
    from heads.__main__ import add_commands as add_heads
    from reelfeat.cli import add_commands as add_reelfeat

    found = {}
    for name, adders in {
        "extract": [add_extract],
        "heads": [add_heads],
        "reelfeat": [add_extract, add_heads, add_reelfeat],
    }.items():
        _, sub = command_parser(name, None)
        for add in adders:
            add(sub)
        found[name] = dict(sub.choices)
    found["reelfeat-module"] = found["reelfeat"]
    return found


def params_keys() -> set[str]:
    """Every key a params.yaml section takes, at any depth, from the configs that read them."""
    from extract.analysis.insight import InsightConfig
    from extract.backbones import get_backbone, list_backbones
    from extract.media.views import AudioView, ClipsView, FramesView
    from extract.stages.manifest import PrepareConfig
    from heads.config import HeadConfig, InputConfig
    from reelfeat.report.config import ReportConfig

    configs = [PrepareConfig, FramesView, ClipsView, AudioView, InsightConfig, HeadConfig, InputConfig, ReportConfig]
    configs += [get_backbone(name).config_cls for name in list_backbones()]
    return {f.name for config in configs for f in dataclasses.fields(config)} | {"views", "type", *SECTIONS}


def test_the_readme_is_a_five_minute_read_whose_links_all_lead_somewhere():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    assert "./run.sh demo" in readme and "./run.sh test" in readme  # the two commands
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert {ROOT / link for link in links} == set(PAGES)  # every page linked, every link a page
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / link).exists(), f"{page.name} links to {link}, which is not there"


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_every_command_flag_and_params_key_a_page_shows_exists(page):
    commands, keys = parsers(), params_keys()
    for code in code_of(page.read_text(encoding="utf-8")):
        for module, command, rest in COMMAND.findall(code):
            program = module or "reelfeat"
            assert command in commands[program], f"{page.name}: `{program} {command}` is no command ({code!r})"
            options = commands[program][command]._option_string_actions
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                assert flag in options, f"{page.name}: `{program} {command}` has no {flag} ({code!r})"
        for dotted in re.findall(rf"^(?:{'|'.join(SECTIONS)})(?:\.[\w<>]+)+$", code):
            if dotted.rsplit(".", 1)[-1] in FILE_TYPES:  # a file (decode.py), not a key
                continue
            for part in dotted.split(".")[1:]:
                assert part.startswith("<") or part in keys, f"{page.name}: {dotted}: no params key {part!r}"
        key = re.match(r"^([a-z_]+): \S", code)
        if key and key.group(1) not in NOT_PARAMS:
            assert key.group(1) in keys, f"{page.name}: {code!r}: {key.group(1)!r} is no params key"
