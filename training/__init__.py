"""Model training: LTV network, baselines, evaluation (imported as ``ltvfeed.training``, see ``ltvfeed``).

ziln (loss and predictive distribution), features (encoding saved inside the model), network (the nn.Module),
fit (training, ``LtvModel``), baselines (naive, BG/NBD + Gamma-Gamma), metrics (``evaluate``), plots,
benchmark (quality/speed check on synthetic shops; the synthetic customers are ``ltvfeed.simulator.btyd_customers``),
propensity (the purchase-propensity model). What they read comes from ``ltvfeed.warehouse``.
"""
