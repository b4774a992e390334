"""Which files a user's text sources stand for: the one routine that walks paths.

Sources are files, directories (every file below, hidden ones left out) and glob patterns
(``'lyrics/**/*.txt'``). The walk never follows a link to a directory, so a link that points back
up (``self -> ..``) cannot make it loop; a link to a file is read like the file. A file reached
twice (named twice, or once by a link) is read once: files are told apart by their real path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from charrnn.errors import CharRNNError

GLOB_CHARACTERS = frozenset("*?[")


def find_files(sources: Sequence[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """The files that ``sources`` stand for, in order: (path, named on its own)."""
    if not sources:
        raise CharRNNError("no text given: pass text files, directories or glob patterns")
    found: dict[str, tuple[Path, bool]] = {}  # by real path
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files, named = files_below(path), False
            if not files:
                raise CharRNNError(f"the directory {source} has no files in it: give one that holds text files")
        elif os.path.lexists(path):
            files, named = [path], True
        elif GLOB_CHARACTERS & set(str(source)):
            files, named = matching(str(source)), False
            if not files:
                raise CharRNNError(f"no file matches the pattern {source}: check it, and quote it for the shell")
        else:
            raise CharRNNError(f"{source} does not exist: give text files, directories or glob patterns")
        for file in files:
            found.setdefault(os.path.realpath(file), (Path(os.path.abspath(file)), named))
    return list(found.values())


def files_below(directory: Path) -> list[Path]:
    """Every file under ``directory`` but hidden ones, by their path relative to it."""
    files = [Path(root) / name for root, name in _walk(directory)]
    return sorted(files, key=lambda file: file.relative_to(directory).as_posix())


def _walk(directory: Path) -> Iterator[tuple[str, str]]:
    """(folder, file name) below ``directory``: hidden ones left out, links to folders not followed."""
    for root, dirs, names in os.walk(directory):  # followlinks=False: a link to a folder is not entered
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from ((root, name) for name in names if not name.startswith("."))


def matching(pattern: str) -> list[Path]:
    """The files a glob pattern matches (``**`` for any depth, ``*``, ``?``, ``[...]``), sorted;
    a folder that matches stands for every file below it. Walked, not globbed: Python's glob
    follows links to folders, and a link back up makes it run until the path is too long."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    regex = re.compile(_translate(parts[fixed:]))
    if not root.is_dir():
        return []
    files = set()
    for folder, name in _walk(root):
        relative = (Path(folder) / name).relative_to(root).as_posix()
        # the file itself, or a folder above it, matches
        prefixes = relative.split("/")
        if any(regex.fullmatch("/".join(prefixes[: i + 1])) for i in range(len(prefixes))):
            files.add(Path(folder) / name)
    return sorted(files)


def _translate(parts: Sequence[str]) -> str:
    """A regular expression for the pattern's components, matched against a /-joined relative path."""
    pieces = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:.*/)?")
            continue
        pieces.append(_component(part) + ("" if last else "/"))
    return "".join(pieces)


def _component(part: str) -> str:
    """One path component's glob as a regular expression (never across a /)."""
    out, i = [], 0
    while i < len(part):
        char = part[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := _class_end(part, i)) > 0:
            inside = part[i + 1 : end]
            inside = "^" + inside[1:] if inside.startswith("!") else inside
            out.append("[" + inside.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _class_end(part: str, start: int) -> int:
    """Where the ``[...]`` class opened at ``start`` closes (a ] right after [ or [! is inside it); -1 if never."""
    j = start + 1
    if part[j : j + 1] == "!":
        j += 1
    if part[j : j + 1] == "]":
        j += 1
    return part.find("]", j)


def cache_dir() -> Path:
    """Where charrnn keeps what it measures or builds once per machine (compiled steps, training
    speeds): $CHARRNN_CACHE, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn."""
    if os.environ.get("CHARRNN_CACHE"):
        return Path(os.environ["CHARRNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"
