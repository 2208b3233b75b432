"""The reward actor's configuration (section `reward`). Importable without torch: the CLI and the launcher
read it without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.settings import Resources
from actors.verifiers import Rule


@dataclass(frozen=True)
class RewardConfig:
    """Reward scoring settings."""

    instances: int = 1
    """Reward actors (they share `rollouts` through a consumer group)."""
    resources: Resources = field(default_factory=Resources)
    """Ray resources per instance."""
    rule: Rule = Rule.EXACT
    """How text answers are scored: exact; sub_em (the paper's), which a tiny model can game by
    repeating words, so the demo default is exact; or restate, for an instruct model that answers
    in a sentence (the reference as whole words among only the question's and framing words)."""
    numeric_tolerance: float = 1e-4
    """Relative tolerance of numeric answers (gold answers carry at most 2 decimals, and say so)."""

    def __post_init__(self) -> None:
        if not 0 <= self.numeric_tolerance < 1:
            raise ValueError(f"reward.numeric_tolerance ({self.numeric_tolerance}) must lie in [0, 1), e.g. 1e-4")
