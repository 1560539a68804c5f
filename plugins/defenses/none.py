"""No defense: the victim encoder as is, one branch (the baseline of every table)."""

from __future__ import annotations

from zepad_bench import Branch, DefendedModel, Defense


class NoDefense(Defense):
    """The undefended public encoder; heads are trained per task on its frozen features."""

    name = "none"
    role = "baseline"

    def fit(self, victim, auxiliaries, data) -> DefendedModel:
        return DefendedModel([Branch("victim", "victim", victim)], self)
