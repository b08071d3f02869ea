"""report.md: its sections in reading order, each written by one function from the params
and the tables (answer.py, evidence.py, provenance.py)."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Params
from pipeline.report import answer, evidence, screening
from pipeline.report.provenance import provenance
from pipeline.report.tables import Tables

Section = Callable[[Params, Tables], str]

SECTIONS: tuple[Section, ...] = (
    answer.recommendation,  # what to use, and how sure
    answer.method,  # how the numbers were made
    answer.verdict,  # did transfer pay, gap by gap
    evidence.headline,  # every configuration's test accuracy and cost
    screening.section,  # the backbones ranked before training, against the search
    evidence.depth,  # accuracy against the share frozen
    evidence.sizes,  # input size and augmentation
    evidence.importances,  # which search parameters mattered
    evidence.strategies,  # every strategy's evidence and the winner on test
    evidence.trials,  # the search's best trials
    provenance,  # what it was all made from
)


def markdown(params: Params, tables: Tables) -> str:
    """The whole report: a title, then every section, a blank line apart."""
    return "\n\n".join(["# Thaw report", *(section(params, tables) for section in SECTIONS)])
