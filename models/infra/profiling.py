"""Where an RL iteration's time and memory go: wall time, peak resident memory and tokens of named phases.

``PhaseProfiler.phase(name, tokens=...)`` times a block; phases nest (``update`` holds ``update/forward``,
``update/backward``, ``update/optimizer``) and repeat (every micro-batch adds to the same ``update/forward``). Peak
memory is the process's resident set size, sampled by one background thread every ``interval`` seconds while any
phase runs: a phase's peak is the highest sample taken while it was open (its own allocations and everything still
alive from before). ``NULL_PROFILER`` does nothing and is what trainers, environments and reward functions hold
unless a benchmark gives them a real one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


def rss_bytes() -> int:
    """This process's resident set size now (psutil; 0 when it is not installed)."""
    try:
        import psutil
    except ImportError:
        return 0
    return psutil.Process().memory_info().rss


@dataclass
class PhaseStats:
    seconds: float = 0.0
    calls: int = 0
    tokens: int = 0
    peak_rss: int = 0

    def as_dict(self) -> dict:
        out = {"seconds": self.seconds, "calls": self.calls, "peak_rss_mb": self.peak_rss / 2**20}
        if self.tokens:
            out.update(tokens=self.tokens, tokens_per_s=self.tokens / self.seconds if self.seconds else None)
        return out


class PhaseProfiler:
    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.phases: dict[str, PhaseStats] = {}
        self._open: dict[str, int] = {}  # name -> peak seen since it opened
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = rss_bytes()
            with self._lock:
                for name in self._open:
                    self._open[name] = max(self._open[name], rss)

    def _ensure_sampler(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @contextlib.contextmanager
    def phase(self, name: str, tokens: int = 0) -> Iterator[None]:
        self._ensure_sampler()
        start_rss = rss_bytes()
        with self._lock:
            reentered = name in self._open
            if not reentered:
                self._open[name] = start_rss
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            end_rss = rss_bytes()
            with self._lock:
                stats = self.phases.setdefault(name, PhaseStats())
                if not reentered:
                    stats.peak_rss = max(stats.peak_rss, self._open.pop(name), end_rss)
                    stats.seconds += seconds
                stats.calls += 1
                stats.tokens += int(tokens)

    def as_dict(self) -> dict[str, dict]:
        return {name: s.as_dict() for name, s in self.phases.items()}

    def table(self, total: str | None = None) -> str:
        """A Markdown table of the phases, in the order they first ran; ``total`` names the phase shares refer to."""
        whole = self.phases[total].seconds if total in self.phases else None
        lines = ["| phase | calls | seconds | share | tokens/s | peak RSS |", "| --- | --- | --- | --- | --- | --- |"]
        for name, s in self.phases.items():
            share = f"{100 * s.seconds / whole:.1f}%" if whole else "-"
            tps = f"{s.tokens / s.seconds:.1f}" if s.tokens and s.seconds else "-"
            lines.append(f"| {name} | {s.calls} | {s.seconds:.2f} | {share} | {tps} | {s.peak_rss / 2**20:,.0f} MB |")
        return "\n".join(lines)


class _NullProfiler:
    @contextlib.contextmanager
    def phase(self, name: str, tokens: int = 0) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass


NULL_PROFILER = _NullProfiler()
