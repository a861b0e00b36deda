"""Offline evaluation: protocols, metrics, baselines and the report of `streamrec evaluate`."""
