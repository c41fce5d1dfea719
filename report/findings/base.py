"""A finding's three parts and what evaluating it gives: a Claim that the data support or not."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..runs import Runs

NOT_REPRODUCED = "not reproduced in this run"
Cells = TypeVar("Cells")


@dataclass(frozen=True)
class Sentence:
    title: str  # what the data should show, in bold
    evidence: str  # the figures it rests on, printed whether it holds or not
    key: str  # its key figure, for the README's one line


@dataclass
class Claim:
    title: str
    holds: bool
    evidence: str
    sets: tuple[str, ...]
    key: str
    finding: str  # the finding's name: its anchor on its page

    @property
    def page(self) -> str:
        return self.sets[0]

    def markdown(self) -> str:
        if self.holds:
            return f"- **{self.title}** {self.evidence}"
        return f"- **{self.title}** ✗ {NOT_REPRODUCED}: {self.evidence}"


class Missing(Exception):
    """A finding's run, or a cell it needs, is not among the committed runs."""


@dataclass(frozen=True)
class Finding(Generic[Cells]):
    name: str
    sets: tuple[str, ...]  # the committed runs it reads; its page is the first one's
    cells: Callable[[Runs], Cells]  # which cells (Missing if they are not there)
    check: Callable[[Cells], bool]
    sentence: Callable[[Cells], Sentence]

    def evaluate(self, runs: Runs) -> Claim:
        chosen = self.cells(runs)
        said = self.sentence(chosen)
        return Claim(said.title, self.check(chosen), said.evidence, self.sets, said.key, self.name)
