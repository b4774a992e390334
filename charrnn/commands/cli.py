"""The `charrnn` command: a thin click layer over the library.

Each command parses typed options (declared once, in ``charrnn.config``), calls the library and
reports. A ``CharRNNError`` becomes one line on stderr and exit status 1; bad option values exit 2
(click's usage errors); an interrupted training run exits 128 + the signal number.
"""

from __future__ import annotations

import click

from charrnn.commands.chat import chat
from charrnn.commands.common import Commands
from charrnn.commands.export import export
from charrnn.commands.generate import generate
from charrnn.commands.inspect import evaluate, explain, info, plot
from charrnn.commands.score import score
from charrnn.commands.serve import serve
from charrnn.commands.train import finetune, plan, train
from charrnn.version import __version__


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="charrnn")
def main() -> None:
    """Character-level LSTM text generator: train on a book, generate text in its voice."""


for command in (train, plan, finetune, generate, chat, serve, evaluate, score, info, explain, plot, export):
    main.add_command(command)
