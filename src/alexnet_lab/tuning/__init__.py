"""Hyper-parameter search with Optuna (src/tune.py): see study.py."""
