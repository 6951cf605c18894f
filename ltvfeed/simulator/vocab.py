"""The fixed world the simulated shop lives in: categories, countries, partners' naming, words for titles and
search queries. Kept as plain data so that behaviour code stays about behaviour."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    median_price: float  # lognormal price centre, in currency units
    price_sigma: float  # lognormal spread of prices within the category
    consumable: bool  # bought again and again (is_repeat_purchase)
    weight: float  # share of the catalogue and of baseline taste
    female_skew: float  # taste multiplier for female users (male users get the inverse)
    age_slope: float  # taste change per decade of age above 40 (log scale)
    nouns: tuple[str, ...]  # product nouns: used in titles and search queries


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", 120.0, 0.9, False, 1.3, 0.7, -0.10, ("headphones", "speaker", "tablet", "camera")),
    Category("books", 15.0, 0.4, False, 1.0, 1.2, 0.15, ("novel", "cookbook", "biography", "comic", "travel guide")),
    Category("fashion", 40.0, 0.6, False, 1.4, 1.5, -0.15, ("dress", "jacket", "shirt", "jeans", "sweater")),
    Category("shoes", 70.0, 0.5, False, 0.8, 1.3, -0.05, ("sneakers", "boots", "sandals", "loafers")),
    Category("home", 45.0, 0.8, False, 1.0, 1.2, 0.15, ("lamp", "cushion", "rug", "vase", "curtain")),
    Category("kitchen", 30.0, 0.8, False, 0.9, 1.1, 0.10, ("pan", "knife", "blender", "mug", "kettle")),
    Category("garden", 35.0, 0.7, False, 0.6, 0.9, 0.35, ("hose", "planter", "shears", "seeds")),
    Category("toys", 25.0, 0.6, False, 0.7, 1.1, -0.05, ("puzzle", "doll", "building blocks", "kite")),
    Category("sports", 50.0, 0.7, False, 0.8, 0.7, -0.20, ("yoga mat", "dumbbell", "racket", "bike helmet")),
    Category("beauty", 18.0, 0.5, True, 1.0, 2.2, -0.10, ("shampoo", "serum", "lipstick", "moisturiser")),
    Category("groceries", 8.0, 0.5, True, 1.2, 1.0, 0.05, ("coffee", "tea", "pasta", "olive oil", "chocolate")),
    Category("pet_supplies", 22.0, 0.5, True, 0.6, 1.1, 0.05, ("dog food", "cat litter", "treats", "chew toy")),
    Category("health", 15.0, 0.5, True, 0.7, 1.2, 0.30, ("vitamins", "bandages", "toothpaste", "sunscreen")),
    Category("baby", 20.0, 0.5, True, 0.5, 1.4, -0.40, ("diapers", "wipes", "baby formula", "pacifier")),
    Category("jewelry", 90.0, 0.9, False, 0.4, 2.0, 0.05, ("necklace", "ring", "earrings", "bracelet")),
    Category("office", 12.0, 0.6, False, 0.6, 0.9, 0.10, ("notebook", "pens", "stapler", "desk organiser")),
)

# country code, share of users, multiplier on purchase rate (demographics carry a weak signal)
COUNTRIES: tuple[tuple[str, float, float], ...] = (
    ("US", 0.30, 1.10),
    ("GB", 0.15, 1.05),
    ("DE", 0.15, 1.15),
    ("FR", 0.10, 0.95),
    ("NL", 0.06, 1.05),
    ("ES", 0.07, 0.85),
    ("IT", 0.07, 0.85),
    ("PL", 0.05, 0.80),
    ("SE", 0.05, 1.00),
)

GENDERS: tuple[str, ...] = ("female", "male", "other")
GENDER_SHARES: tuple[float, ...] = (0.52, 0.45, 0.03)

BRAND_SYLLABLES: tuple[str, ...] = (
    "no", "va", "lu", "mi", "ra", "zen", "ko", "ta", "vel", "qui", "sol", "dor", "ax", "el", "fi", "ber", "mo",
    "ri", "sa", "tek", "um", "ly", "ora", "pix",
)  # fmt: skip

ADJECTIVES: tuple[str, ...] = (
    "classic", "premium", "eco", "compact", "deluxe", "essential", "smart", "vintage", "light", "pro", "soft",
    "bold",
)  # fmt: skip

QUERY_ADJECTIVES: tuple[str, ...] = ("cheap", "best", "new", "gift", "sale", "organic", "small", "large")
