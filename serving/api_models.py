"""Response models of the feed API: they are the documented contract (OpenAPI at /docs and /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ltvfeed.serving.feed_service import ServedFeed

_GEN = "20250601T020000123456Z-a1b2c3"


class ScoreComponents(BaseModel):
    """The parts the score was made of: ``score = w_c * commercial + w_p * purchase + w_d * diversity`` with the
    generation's weights (see the generation's metadata)."""

    commercial: float = Field(description="Commercial performance of the item, in [0, 1].", examples=[0.83])
    purchase: float | None = Field(
        description="Predicted P(purchase) by this user, in [0, 1]; null when it was not part of the score "
        "(weight 0, e.g. in the classic feed).",
        examples=[0.12],
    )
    diversity: float = Field(description="Diversity bonus relative to earlier positions and history, in [0, 1].")


class FeedItemOut(BaseModel):
    rank: int = Field(description="1-based position in the feed.", ge=1, examples=[1])
    item_id: str = Field(examples=["i1042"])
    score: float = Field(description="The ranking score (higher first).", examples=[0.61])
    components: ScoreComponents


class FeedResponse(BaseModel):
    """A user's feed and how it was obtained."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u123",
                    "generation": _GEN,
                    "generated_at": "2025-06-01T02:00:00+00:00",
                    "personalised": True,
                    "fallback": None,
                    "degraded": False,
                    "freshness": "off",
                    "n": 2,
                    "n_available": 10,
                    "items": [
                        {
                            "rank": 1,
                            "item_id": "i1042",
                            "score": 0.61,
                            "components": {"commercial": 0.83, "purchase": 0.42, "diversity": 1.0},
                        },
                        {
                            "rank": 2,
                            "item_id": "i77",
                            "score": 0.55,
                            "components": {"commercial": 0.71, "purchase": 0.38, "diversity": 0.6},
                        },
                    ],
                },
                {
                    "user_id": "new-user",
                    "generation": _GEN,
                    "generated_at": "2025-06-01T02:00:00+00:00",
                    "personalised": False,
                    "fallback": "classic",
                    "degraded": True,
                    "freshness": "off",
                    "n": 1,
                    "n_available": 10,
                    "items": [
                        {
                            "rank": 1,
                            "item_id": "i9",
                            "score": 0.97,
                            "components": {"commercial": 0.97, "purchase": None, "diversity": 0.0},
                        }
                    ],
                },
            ]
        }
    )

    user_id: str
    generation: str | None = Field(description="Id of the stored feed generation the items come from.")
    generated_at: str | None = Field(description="When that generation was generated (ISO 8601, UTC), if known.")
    personalised: bool = Field(description="True if these are the user's own ranked items.")
    fallback: Literal["classic"] | None = Field(
        description="'classic' when the classic (non-personal) feed is served instead: the user has no personal "
        "feed in the served generation, or Redis is unavailable."
    )
    degraded: bool = Field(
        description="True when the last known classic feed held in memory was served: Redis was unavailable, or "
        "it had lost the served generation (which is then republished from its archive)."
    )
    freshness: Literal["off", "applied", "unavailable"] = Field(
        description="Request-time freshness filter (drops items bought since the generation's data cutoff): "
        "'off' when none is configured, 'unavailable' when it failed (or Redis is down) and the feed is unfiltered."
    )
    n: int = Field(description="Number of items returned (at most the n asked for).")
    n_available: int = Field(
        description="Items this feed holds (after the freshness filter): a generation stores a fixed number per "
        "feed (`ltvfeed feeds generate --n`, 10 by default), so asking for more returns these."
    )
    items: list[FeedItemOut]
    experiment: str | None = Field(
        default=None, description="The A/B experiment this answer was served under (null: none)."
    )
    arm: str | None = Field(default=None, description="The user's arm in that experiment.")
    feed: str = Field(
        default="personalised",
        description="Which feed was served: classic, personalised, or variant:NAME (a variant of the generation "
        "ranked with other weights; an arm asking for a variant the generation lacks gets personalised).",
    )
    feed_id: str | None = Field(
        default=None,
        description="Id of this served feed (logged as an exposure): send it back as `properties.feed_id` with the "
        "clicks and orders it leads to.",
    )

    @classmethod
    def of(
        cls, served: ServedFeed, experiment: str | None = None, arm: str | None = None, feed_id: str | None = None
    ) -> FeedResponse:
        return cls(
            experiment=experiment,
            arm=arm,
            feed=served.feed,
            feed_id=feed_id,
            user_id=served.user_id,
            generation=served.generation,
            generated_at=served.generated_at,
            personalised=served.personalised,
            fallback=None if served.personalised else "classic",
            degraded=served.degraded,
            freshness=served.freshness,
            n=len(served.items),
            n_available=served.available,
            items=[
                FeedItemOut(
                    rank=rank,
                    item_id=it.item_id,
                    score=it.score,
                    components=ScoreComponents(commercial=it.commercial, purchase=it.purchase, diversity=it.diversity),
                )
                for rank, it in enumerate(served.items, start=1)
            ],
        )


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["no committed feed generation yet"])


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    generation: str | None = Field(default=None, description="The served generation, if any.")
    reason: str | None = Field(default=None, description="Why the service is not ready.", examples=[None])
