"""One declaration per option (charrnn/options.py, charrnn/config.py): the CLI, the API and the docs agree."""

from pathlib import Path

import click
import pytest

from charrnn.commands import options_page
from charrnn.commands.cli import main
from charrnn.config import Acceleration, DynamicEvaluation, ModelConfig, Placement, SampleConfig, TrainConfig
from charrnn.options import declared
from charrnn.sampling import Sampling

DECLARED = [
    opt
    for cls in (ModelConfig, TrainConfig, SampleConfig, Sampling, DynamicEvaluation, Placement, Acceleration)
    for opt in declared(cls)
]
OPTIONS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "options.md"


def click_options(command: str) -> dict[str, click.Option]:
    return {p.name: p for p in main.commands[command].params if isinstance(p, click.Option)}


@pytest.mark.parametrize("opt", DECLARED, ids=lambda opt: f"{opt.owner.__name__}.{opt.name}")
def test_every_declared_option_is_a_click_option_of_its_commands_and_nowhere_else(opt):
    for command in main.commands:
        param = click_options(command).get(opt.name)
        if command not in opt.spec.commands:
            taken_by_another = any(o.name == opt.name and command in o.spec.commands for o in DECLARED)
            assert param is None or taken_by_another, f"{command} has --{opt.name} but it is not declared for it"
            continue
        assert param is not None, f"{command} lacks {opt.flag}"
        assert param.opts[0] == opt.flag and param.help == opt.spec.help
        if not isinstance(param.show_default, str) or param.show_default == opt.spec.show_default:
            assert param.default == opt.default  # a command that defaults from elsewhere says so instead
        if opt.spec.choices:
            assert tuple(param.type.choices) == opt.spec.choices
        elif opt.type in (int, float):
            assert (param.type.min, param.type.max) == (opt.spec.low, opt.spec.high)
            assert (param.type.min_open, param.type.max_open) == (opt.spec.low_open, opt.spec.high_open)


@pytest.mark.parametrize(
    "opt", [opt for opt in DECLARED if opt.type in (int, float) or opt.spec.choices], ids=lambda opt: opt.name
)
def test_the_api_refuses_what_the_cli_refuses(opt):
    bad = "no such choice" if opt.spec.choices else (opt.spec.low - 1 if opt.spec.low is not None else float("nan"))
    with pytest.raises(ValueError, match=opt.name):
        opt.check(bad)
    opt.check(opt.default)  # the default is always allowed


def test_the_options_page_in_docs_is_what_the_commands_say():
    assert OPTIONS_PAGE.read_text(encoding="utf-8") == options_page.render(), (
        "docs/options.md is out of date: run  python -m charrnn.commands.options_page > docs/options.md"
    )
    page = OPTIONS_PAGE.read_text(encoding="utf-8")
    for opt in DECLARED:
        assert f"`{opt.flag}`" in page and opt.spec.help.replace("|", "\\|") in page
