import pandas as pd
import pytest


@pytest.fixture
def tiny_ratings():
    """20 users x 30 items, deterministic, with timestamps."""
    import numpy as np
    rng = np.random.default_rng(1)
    rows = []
    for u in range(20):
        items = rng.choice(30, size=12, replace=False)
        for j, i in enumerate(items):
            rows.append((u + 1, int(i) + 100, float(rng.integers(1, 6)), 1_000_000 + 1000 * j + u))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
