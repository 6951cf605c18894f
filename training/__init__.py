"""Model training: LTV network, baselines, evaluation.

ziln (loss and predictive distribution), features (encoding saved inside the model), network (the nn.Module),
fit (training, ``LtvModel``), baselines (naive, BG/NBD + Gamma-Gamma), metrics (``evaluate``), plots,
synthetic (customers with known structure), benchmark (quality/speed check on synthetic shops).
"""
