"""Model training: LTV network, baselines, evaluation."""
