"""The plain array types a feed is ranked from, and the pure rules on them that training and serving share.

- :mod:`~ltvfeed.frames.inputs`: the catalogue and a batch of users as arrays (``Catalogue``, ``UserBatch``),
  which categories are non-merchandise, how commercial performance becomes a [0, 1] score;
- :mod:`~ltvfeed.frames.history`: P(bought again) from a user's own purchase history, and how it combines with
  a model's P(purchase);
- :mod:`~ltvfeed.frames.propensity`: the propensity plug-in signature and the category-affinity stand-in.

Why here, below ``training`` and ``serving``: the warehouse builds these frames, training evaluates the
propensity model on exactly what the feed serves (same inputs, same history estimate, same stand-in baseline),
and serving ranks with them; none of these may import another's internals (issue 12), so what they all need
lives in the cross-cutting package.
"""
