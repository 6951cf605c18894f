"""A synthetic shop whose users have hidden traits: emits what the real system would see (raw tables as Parquet)
and keeps the truth (future spend, traits) apart for evaluation."""

from ltvfeed.simulator.config import BehaviourParams, SimulationConfig, parse_end_date, parse_horizons
from ltvfeed.simulator.shop import ShopData, ShopSummary, simulate_shop, simulate_to_directory, write_shop

__all__ = [
    "BehaviourParams",
    "ShopData",
    "ShopSummary",
    "SimulationConfig",
    "parse_end_date",
    "parse_horizons",
    "simulate_shop",
    "simulate_to_directory",
    "write_shop",
]
