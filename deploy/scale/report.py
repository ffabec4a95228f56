"""One line per assertion: ``PASS``/``FAIL``, a name and the figures behind it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}" + (f"  [{self.detail}]" if self.detail else "")
