"""Experiments built on c3.eval: the recipe (c3.experiments.recipe), held-out text (heldout), mixed-length batches
(batches), one run (runs), the ratio sweep (sweep), its report (report) and the demo (demo).

Nothing here is imported by ``import c3``: ``from c3.experiments import sweep`` (or ``demo``) loads it.
"""
