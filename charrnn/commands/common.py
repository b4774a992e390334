"""What every command shares: the group that turns errors into one line, and click options built
from the option declarations (``charrnn.config``), so that no option is described twice."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from charrnn.api import CharModel, load
from charrnn.bundled import BOOK_NAME, bundled_book
from charrnn.core.data import read_text
from charrnn.errors import CharRNNError
from charrnn.options import Option, options_for

OUT_OF_MEMORY = "out of memory: use a smaller --hidden-size, --num-layers, --batch-size or --seq-len"
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
MODEL_PATH = click.Path(exists=True, path_type=Path)  # a checkpoint, or a `charrnn export` directory


class Commands(click.Group):
    """A click group that reports charrnn's own errors as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CharRNNError as exc:
            raise click.ClickException(str(exc)) from None
        except (MemoryError, torch.OutOfMemoryError):
            raise click.ClickException(OUT_OF_MEMORY) from None
        except RuntimeError as exc:
            if "can't allocate memory" not in str(exc):  # torch's CPU allocator says it this way
                raise
            raise click.ClickException(OUT_OF_MEMORY) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Reject NaN and infinity, which click's FloatRange lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def _parsed_by(parse: Callable[[str], Any]) -> Callable:
    """A click callback that refuses what the declaration's ``parse`` refuses (exit 2), keeping the text."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from None
        return value

    return callback


def click_option(opt: Option, replace: tuple[Any, str] | None = None) -> Callable:
    """The click option for a declared option; ``replace`` = (default, shown default) for a command
    that takes the default from elsewhere."""
    spec = opt.spec
    default, show_default = replace if replace is not None else (opt.default, None)
    extra: dict[str, Any] = {}
    if opt.type is bool:
        decls = [f"{opt.flag}/--no-{opt.flag[2:]}" if spec.negatable else opt.flag, opt.name]
        extra["is_flag"] = True
    else:
        decls = [opt.flag, opt.name]
        if spec.choices is not None:
            extra["type"] = click.Choice(spec.choices)
        elif spec.parse is not None:
            extra["type"] = opt.type
            extra["callback"] = _parsed_by(spec.parse)
        elif opt.type in (int, float):
            range_type = click.IntRange if opt.type is int else click.FloatRange
            extra["type"] = range_type(spec.low, spec.high, min_open=spec.low_open, max_open=spec.high_open)
            if opt.type is float:
                extra["callback"] = _finite
        else:
            extra["type"] = opt.type
    return click.option(
        *decls,
        default=default,
        help=spec.help,
        metavar=spec.metavar,
        show_default=show_default or spec.show_default or True,
        **extra,
    )


def declared_options(
    command: str, *config_classes: type, replace: dict[str, tuple[Any, str]] | None = None
) -> Callable:
    """Decorate a click command with every option of ``config_classes`` that ``command`` takes.

    ``replace`` maps an option name to (default, shown default) for a command that takes its
    default from elsewhere (say, the checkpoint's batch size).
    """
    replace = replace or {}

    def decorate(function: Callable) -> Callable:
        for opt in reversed(options_for(command, *config_classes)):
            function = click_option(opt, replace.get(opt.name))(function)
        return function

    return decorate


def read_utf8(path: Path, *, empty_ok: bool = False) -> str:
    """``read_text`` for commands that have no --decode-errors, so that its advice to pass it
    is not given; with ``empty_ok`` an empty file is the empty text rather than an error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharRNNError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not raw and empty_ok:
        return ""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharRNNError(f"{path} is not valid UTF-8 (byte offset {exc.start}): convert it to UTF-8") from None
    return read_text(path)  # the same BOM, CRLF, NUL-byte and empty-file handling as everywhere


def text_or_bundled_book(text_file: Path | None) -> Path:
    """The given text file, or the tinyshakespeare text that ships inside the package."""
    if text_file is not None:
        return text_file
    click.echo(f"no text given: using the bundled {BOOK_NAME}", err=True)
    return bundled_book()


def load_model(
    checkpoint: Path | None, device: str, compile: str = "off", quantize: str = "none", threads: str = "auto"
) -> tuple[CharModel, str]:
    """The model in CHECKPOINT, or the bundled Shakespeare model; and a name for it.

    Says on stderr which model a command without CHECKPOINT uses, so that nobody mistakes it for
    theirs, and (once each) why generation is not running a faster step (``StepRuntime``).
    """
    note = lambda line: click.echo(line, err=True)
    model = load(checkpoint, device, compile=compile, quantize=quantize, threads=threads, note=note)
    if checkpoint is None:
        loss = model.checkpoint.best_val_loss
        click.echo(
            f"no CHECKPOINT given: using the bundled Shakespeare model ({model.describe_size()}, "
            f"val loss {loss:.3f} nats/char)",
            err=True,
        )
    return model, model_name(checkpoint)


def model_name(checkpoint: Path | None) -> str:
    """What the model in CHECKPOINT is called where it is served: its run directory and name."""
    return "charrnn/shakespeare" if checkpoint is None else f"{checkpoint.resolve().parent.name}/{checkpoint.stem}"


def unescape(text: str) -> str:
    """The shell gives "\\n" as backslash + n: turn \\n, \\t, \\\\ and \\xHH (say \\x1c, the document
    separator) into what they mean."""
    named = {"n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[nt\\])", lambda m: named.get(m[1]) or chr(int(m[1][1:], 16)), text)
