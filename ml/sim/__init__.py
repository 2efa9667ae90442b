"""The traffic simulator's pure part: a seeded population of travellers and sites, the hidden ground truth
of their behaviour, and the oracle that evaluations ask. No I/O: app/simulate.py drives the server with it."""

from ml.sim.oracle import Oracle, auc
from ml.sim.population import Population, Site, Traveller, population
from ml.sim.truth import Truth

__all__ = ["Oracle", "Population", "Site", "Traveller", "Truth", "auc", "population"]
