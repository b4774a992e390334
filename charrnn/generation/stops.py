"""Stop texts: where a sample ends, decided without ever taking back text already shown."""

from __future__ import annotations

from collections.abc import Sequence


class StopWatch:
    """Cuts one sample just before the leftmost place where any stop text occurs in it.

    Shown text must never be taken back, so the end of the sample that might still become a
    stop text is held back. A stop found at position i is acted on only once no other stop can
    still complete at a position before i: with stops ["abcd", "bc"], "abc" waits for one more
    character, since "abcd" would end the sample earlier.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [stop for stop in stops if stop]
        self.pending = ""  # generated text not shown yet
        self.stopped = False

    def _match(self) -> int | None:
        """Position of the leftmost stop text in ``pending``, if any."""
        return min((i for stop in self.stops if (i := self.pending.find(stop)) >= 0), default=None)

    def _open_before(self, end: int) -> int:
        """The first position before ``end`` where a stop text has begun and may still complete
        (``pending`` from there is a proper prefix of one); ``end`` if there is none."""
        for start in range(end):
            rest = self.pending[start:]
            if any(len(stop) > len(rest) and stop.startswith(rest) for stop in self.stops):
                return start
        return end

    def feed(self, character: str) -> str:
        """Take the next character; return the text that can safely be shown now."""
        if not self.stops:
            return character
        self.pending += character
        match = self._match()
        end = len(self.pending) if match is None else match
        hold = self._open_before(end)
        if match is not None and hold == match:  # nothing earlier can still complete
            self.stopped = True
            shown, self.pending = self.pending[:match], ""
            return shown
        shown, self.pending = self.pending[:hold], self.pending[hold:]
        return shown

    def flush(self) -> str:
        """The held-back text once the sample has reached its length (cut at a stop in it)."""
        match = self._match()
        shown, self.pending = self.pending[:match], ""
        return shown
