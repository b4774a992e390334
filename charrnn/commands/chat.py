"""`charrnn chat`: type a prime, watch the model continue it; settings change as you go.

A line of text is a prime: the model reads it (after what it has written so far, or afresh with
/new) and writes a continuation, streamed as it is drawn. A line starting with / is a command.
Ctrl-C stops the current continuation but not the session; Ctrl-D or /quit ends it. Line editing
and history come from the terminal's readline, and history is kept between sessions.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from charrnn.commands.common import EXISTING_FILE, declared_options, load_model, unescape
from charrnn.config import Acceleration, Placement, SampleConfig
from charrnn.core.vocab import UnknownCharactersError
from charrnn.generation.session import Session
from charrnn.options import declared
from charrnn.sampling import BY_NAME as SAMPLING_BY_NAME
from charrnn.sampling import OPTIONS as SAMPLING_OPTIONS
from charrnn.sampling import Sampling, changed

HELP = """commands (anything else is a prime for the model to continue; \\n in it is a line break,
and an empty line lets the model go on):
  /more [N]        continue from where the text stopped (N characters, default --length)
  /new             forget the text so far: the next prime starts from the zero state
  /length N        characters per continuation     /seed S
  /settings        show the settings               /help              /quit (or Ctrl-D)
sampling (each as its --flag; an optional one takes off):
{sampling}
Ctrl-C stops a continuation; the text so far stays, so /more goes on from it."""
# Short names a person types, beside each setting's own (/top-k, /repetition-penalty, ...).
ALIASES = {"temp": "temperature"}


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE, required=False)
@declared_options("chat", SampleConfig, Sampling, Placement, Acceleration)
@click.option(
    "--history",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="~/.charrnn_history",
    help="Where to keep the lines typed, between sessions.",
)
def chat(
    checkpoint: Path | None,
    length: int,
    seed: int | None,
    device: str,
    threads: str,
    compile: str,
    quantize: str,
    history: Path | None,
    **sampling: Any,
) -> None:
    """Talk to CHECKPOINT (default: the bundled Shakespeare model) in the terminal.

    \b
    Examples:
      charrnn chat
      charrnn chat checkpoints/tinyshakespeare/best.pt --temperature 0.6 --length 300
      charrnn chat --repetition-penalty 1.2 --min-p 0.05
    """
    model, name = load_model(checkpoint, device, compile, quantize, threads)
    # Started from a background job or a non-interactive shell, a process inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt; in a terminal session Ctrl-C must stop the text.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    session = model.session(seed, **sampling)
    chat_state = Chat(session, length)
    _use_readline(history or Path.home() / ".charrnn_history")
    click.echo(f"charrnn chat: {name} ({model.describe_size()}). /help for commands, Ctrl-D to quit.")
    click.echo(chat_state.show())
    while True:
        try:
            line = input("> ")
        except EOFError:
            click.echo()
            return
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, as a shell does
            click.echo()
            continue
        if line.startswith("/"):
            if chat_state.command(line) == "quit":
                return
            continue
        try:
            session.feed(unescape(line))  # an empty line feeds nothing: the model goes on where it was
        except UnknownCharactersError as exc:
            click.echo(f"error: {exc}; try again without them", err=True)
            continue
        chat_state.continue_text(chat_state.length)


@dataclass
class Chat:
    """The conversation: its session and the length of each continuation."""

    session: Session
    length: int

    def show(self) -> str:
        return f"{self.session.sampling.describe()}, length {self.length}, seed {self.session.last_seed}"

    def continue_text(self, length: int) -> None:
        """Stream a continuation to the terminal; Ctrl-C ends it early (the session stays usable)."""
        try:
            for piece in self.session.generate(length):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write("\n[stopped]")
        sys.stdout.write("\n")
        sys.stdout.flush()

    def command(self, line: str) -> str | None:
        """Carry out one /command; returns "quit" for /quit."""
        name, _, argument = line[1:].strip().partition(" ")
        name = ALIASES.get(name, name).replace("-", "_")
        session = self.session
        try:
            if name in ("quit", "exit", "q"):
                return "quit"
            if name == "help":
                click.echo(HELP.format(sampling=_sampling_help()))
            elif name == "new":
                session.reset()
                click.echo("(the text is forgotten: the next prime starts afresh)")
            elif name == "more":
                self.continue_text(_declared(SampleConfig, "length", argument) if argument else self.length)
            elif name == "settings":
                click.echo(self.show())
            elif name == "seed":
                session.seed(_declared(SampleConfig, "seed", argument))
                click.echo(self.show())
            elif name == "length":
                self.length = _declared(SampleConfig, "length", argument)
                click.echo(self.show())
            elif name in SAMPLING_BY_NAME:
                session.sampling = changed(session.sampling, name, SAMPLING_BY_NAME[name].from_text(argument))
                click.echo(self.show())
            else:
                click.echo(f"unknown command /{line[1:].split()[0]}: /help lists them", err=True)
        except ValueError as exc:
            click.echo(f"error: /{name.replace('_', '-')} {exc}", err=True)
        return None


def _declared(owner: type, name: str, text: str) -> Any:
    """A /command's value, parsed and checked by the option's declaration (as its --flag is)."""
    return next(opt for opt in declared(owner) if opt.name == name).from_text(text)


def _sampling_help() -> str:
    value = lambda opt: "on|off" if opt.type is bool else f"{'off|' if opt.optional else ''}VALUE"
    rows = [f"  /{opt.name.replace('_', '-')} {value(opt)}" for opt in SAMPLING_OPTIONS]
    return "\n".join(rows)


def _use_readline(history: Path) -> None:
    """Line editing and a history kept between sessions, where the terminal has readline."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline: plain input() still works
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)
    atexit.register(_save_history, readline, history)


def _save_history(readline: Any, history: Path) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(history)
