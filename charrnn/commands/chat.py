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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from charrnn.commands.common import EXISTING_FILE, declared_options, load_model, unescape
from charrnn.config import Acceleration, Placement, SampleConfig
from charrnn.core.vocab import UnknownCharactersError
from charrnn.generation.sample import Sampling
from charrnn.generation.session import Session

HELP = """commands (anything else is a prime for the model to continue; \\n in it is a line break,
and an empty line lets the model go on):
  /more [N]        continue from where the text stopped (N characters, default --length)
  /new             forget the text so far: the next prime starts from the zero state
  /temp T          temperature (> 0)          /top-k K | off     /top-p P | off
  /length N        characters per continuation /seed S            /greedy on | off
  /settings        show the settings          /help              /quit (or Ctrl-D)
Ctrl-C stops a continuation; the text so far stays, so /more goes on from it."""


@dataclass
class Settings:
    sampling: Sampling
    length: int

    def show(self, seed: int) -> str:
        s = self.sampling
        return (
            f"temperature {s.temperature:g}, top-k {s.top_k or 'off'}, top-p {s.top_p or 'off'}, "
            f"greedy {'on' if s.greedy else 'off'}, length {self.length}, seed {seed}"
        )


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE, required=False)
@declared_options("chat", SampleConfig, Placement, Acceleration)
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
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    device: str,
    threads: str,
    compile: str,
    quantize: str,
    history: Path | None,
) -> None:
    """Talk to CHECKPOINT (default: the bundled Shakespeare model) in the terminal.

    \b
    Examples:
      charrnn chat
      charrnn chat checkpoints/tinyshakespeare/best.pt --temperature 0.6 --length 300
    """
    model, name = load_model(checkpoint, device, compile, quantize, threads)
    model.runtime.threads.log = lambda message: None  # a conversation is not a log: no lines amid the text
    # Started from a background job or a non-interactive shell, a process inherits SIGINT ignored,
    # and Python then never raises KeyboardInterrupt; in a terminal session Ctrl-C must stop the text.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # A conversation has no known length: --compile auto uses a cached compiled step but builds none.
    session = Session(model.model, model.vocab, seed, model.runtime.stepper(1, work=0), model.runtime.threads)
    settings = Settings(Sampling(temperature, top_k, top_p), length)
    _use_readline(history or Path.home() / ".charrnn_history")
    click.echo(f"charrnn chat: {name} ({model.describe_size()}). /help for commands, Ctrl-D to quit.")
    click.echo(settings.show(session.last_seed))
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
            if _command(line, session, settings) == "quit":
                return
            continue
        try:
            session.feed(unescape(line))  # an empty line feeds nothing: the model goes on where it was
        except UnknownCharactersError as exc:
            click.echo(f"error: {exc}; try again without them", err=True)
            continue
        _continue(session, settings, settings.length)


def _continue(session: Session, settings: Settings, length: int) -> None:
    """Stream a continuation to the terminal; Ctrl-C ends it early (the session stays usable)."""
    try:
        for piece in session.generate(length, settings.sampling):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n[stopped]")
    sys.stdout.write("\n")
    sys.stdout.flush()


def _command(line: str, session: Session, settings: Settings) -> str | None:
    """Carry out one /command; returns "quit" for /quit."""
    name, _, argument = line[1:].strip().partition(" ")
    argument = argument.strip()
    try:
        if name in ("quit", "exit", "q"):
            return "quit"
        if name == "help":
            click.echo(HELP)
        elif name == "new":
            session.reset()
            click.echo("(the text is forgotten: the next prime starts afresh)")
        elif name == "more":
            _continue(session, settings, _number(argument, int, 1) if argument else settings.length)
        elif name == "settings":
            click.echo(settings.show(session.last_seed))
        elif name == "seed":
            session.seed(_number(argument, int, 0))
            click.echo(settings.show(session.last_seed))
        elif name == "length":
            settings.length = _number(argument, int, 1)
            click.echo(settings.show(session.last_seed))
        elif name in ("temp", "temperature", "top-k", "top-p", "greedy"):
            settings.sampling = _changed(settings.sampling, name, argument)
            click.echo(settings.show(session.last_seed))
        else:
            click.echo(f"unknown command /{name}: /help lists them", err=True)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
    return None


def _changed(sampling: Sampling, name: str, argument: str) -> Sampling:
    off = argument.lower() in ("off", "none", "0")
    if name in ("temp", "temperature"):
        changed = replace(sampling, temperature=_number(argument, float, None))
    elif name == "top-k":
        changed = replace(sampling, top_k=None if off else _number(argument, int, 1))
    elif name == "top-p":
        changed = replace(sampling, top_p=None if off else _number(argument, float, None))
    else:
        if argument.lower() not in ("on", "off"):
            raise ValueError("/greedy takes on or off")
        changed = replace(sampling, greedy=argument.lower() == "on")
    try:
        changed.check()
    except Exception as exc:  # CharRNNError: said as a ValueError here, on one line
        raise ValueError(str(exc)) from None
    return changed


def _number(text: str, kind: type, low: Any) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if low is not None and value < low:
        raise ValueError(f"{value} is below {low}")
    return value


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
