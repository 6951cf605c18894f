"""A/B experiments on the feed: deterministic assignment (``assignment``) and the statistics engine
(``stats``), both pure; registry, exposure logging and reports build on them."""
