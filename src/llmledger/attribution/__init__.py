"""Attribution: which tenant, user, org, feature and agent a call is for."""

from llmledger.attribution.context import (
    EMPTY,
    Attribution,
    attribute,
    current_attribution,
    make_attribution,
    reset_attribution,
    set_attribution,
)

__all__ = [
    "EMPTY",
    "Attribution",
    "attribute",
    "current_attribution",
    "make_attribution",
    "reset_attribution",
    "set_attribution",
]
