"""Each reader's trials: the pack's shared items in the reader's own order, with counterbalanced sides.

Within each comparison and class, half of the items show the comparison's first method on the left (one more
or less when the count is odd). Readers are paired in the order they are added (slots 0 and 1, 2 and 3, ...) and
the second of a pair sees every item mirrored, so across the pair each item is shown once each way round: a
reader's habit of picking one side cannot pass for a preference of one method, and an item's side cannot either.
The layout depends only on the pack's seed and the slot, and is stored with the reader when they are added.
"""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

ORDER, SIDES = 0, 1  # streams of the seed


@dataclass(frozen=True)
class Trial:
    trial: int  # position in the reader's sequence, from 0
    item: int
    left_token: str
    right_token: str


def first_method_left(items: list[dict], seed: int, slot: int) -> dict[int, bool]:
    """item -> whether its token_a is shown on the left to the reader in `slot`."""
    generator = np.random.default_rng([seed, SIDES, slot // 2])
    strata = defaultdict(list)
    for item in sorted(items, key=lambda item: item["item"]):
        strata[item["comparison"], item["class"]].append(item["item"])
    left = {}
    for stratum in sorted(strata):
        members = strata[stratum]
        flags = np.arange(len(members)) < len(members) // 2
        if len(members) % 2:  # the odd one out goes either way
            flags[-1] = generator.random() < 0.5
        left |= dict(zip(members, (generator.permutation(flags) ^ bool(slot % 2)).tolist()))
    return left


def reader_trials(items: list[dict], seed: int, slot: int) -> list[Trial]:
    """The trials of the reader in `slot` (0 for the first reader added): every item once, in a random order of
    its own. `items` are the key's items (item, comparison, class, token_a, token_b)."""
    left = first_method_left(items, seed, slot)
    by_number = sorted(items, key=lambda item: item["item"])
    ordered = [by_number[index] for index in np.random.default_rng([seed, ORDER, slot]).permutation(len(items))]
    return [
        Trial(position, item["item"], *((item["token_a"], item["token_b"]) if left[item["item"]]
                                        else (item["token_b"], item["token_a"])))
        for position, item in enumerate(ordered)
    ]
