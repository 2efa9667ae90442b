"""Model-quality evaluations on public data (`python -m app eval NAME`); file loaders live here, not in ml/."""
