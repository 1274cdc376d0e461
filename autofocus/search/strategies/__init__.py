"""Focus search strategies: pure ask/tell state machines (see `base`).

`make_strategy(name, space, **options)` builds one by name (`registry`);
`DEFAULT_STRATEGY` is "guided".
"""

from autofocus.search.strategies.base import SearchOutcome, SearchSpace, Strategy
from autofocus.search.strategies.registry import (
    DEFAULT_STRATEGY,
    available_strategies,
    describe_strategies,
    make_strategy,
    register_strategy,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "SearchOutcome",
    "SearchSpace",
    "Strategy",
    "available_strategies",
    "describe_strategies",
    "make_strategy",
    "register_strategy",
]
