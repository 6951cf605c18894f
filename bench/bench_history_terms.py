"""The propensity model with and without its history terms (issue 14: the user's share of spend in the item's
category and the distance of the item's price from what the user pays), trained and judged by
``train_propensity`` itself on a simulated shop, beside every floor row of the promotion gate.

    .venv/bin/python bench/bench_history_terms.py                 # the shop of bench_generation --quality-only
    .venv/bin/python bench/bench_history_terms.py --users 12000   # a larger shop

Two folds per design: trained at as_of - 90 judged at as_of - 60, trained at as_of - 60 judged at as_of - 30
(the last 30 days stay unseen, as in bench_generation). Printed per fold: the gate's table for each design (the
``model`` row is what would be served: the two-tower's P combined with the history's P(bought again)), the
promotion decision, the learned history weights, and the ratio of the model row's NDCG@10 with the terms to
without them and to the best floor row.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from scratch_stack import add_shop_arguments, load_simulated_shop, scratch_stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shop_arguments(parser)
    args = parser.parse_args()

    import mlflow

    from ltvfeed.training.propensity import PropensityConfig, train_propensity
    from ltvfeed.training.propensity.registry import scorer_from_pyfunc

    end = date(2026, 6, 1)
    as_of = end - timedelta(days=30)
    cutoffs = [as_of - timedelta(days=d) for d in (90, 60, 30)]
    shipped = PropensityConfig(user_features="marts", ltv_model=None)
    designs = {"with history terms": shipped, "without": replace(shipped, history_terms=False)}
    pd.set_option("display.width", 200)
    with scratch_stack("history_terms") as (stack, tmp):
        load_simulated_shop(stack, Path(tmp), args, end, cutoffs)
        for cutoff, eval_cutoff in itertools.pairwise(cutoffs):
            ndcg = {}
            for name, cfg in designs.items():
                result = train_propensity(stack, cutoff, eval_cutoff, cfg=cfg)
                table = result.metrics
                print(f"\n{name}: trained at {cutoff}, judged at {eval_cutoff}; promoted: {result.promoted} "
                      f"({result.reason})")  # fmt: skip
                print(table.to_string(float_format=lambda v: f"{v:.4f}"))
                network = scorer_from_pyfunc(mlflow.pyfunc.load_model(result.model_uri)).network
                if network.history_terms:
                    h_share, h_price = (round(float(w), 3) for w in network.history.detach())
                    print(f"learned: h_share {h_share}, h_price {h_price}")
                floor = table.drop(index=["model", "two_tower"])["ndcg_at_10"]
                ndcg[name] = (table.loc["model", "ndcg_at_10"], floor.max(), floor.idxmax())
            (with_terms, best, best_name), (without, _, _) = ndcg.values()
            print(
                f"\nfold {cutoff} -> {eval_cutoff}: served NDCG@10 with / without the terms "
                f"{with_terms / without:.3f}; with the terms / best floor row ({best_name}) {with_terms / best:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
