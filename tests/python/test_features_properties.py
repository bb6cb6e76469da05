"""Property test of the features models: after random appends, late rows, corrections,
backfills, deletions and invalidated rows, every features table equals a full refresh, row for row
(the one-day runs resume the Wilder and EMA recursions from the stored rows)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import FEATURE_TABLES as FEATURES
from .helpers import assert_equals_full_refresh
from .histories import write_rows
from .test_properties import OLD, apply, initial_history

SELECT = " ".join(f"+{m}" for m in FEATURES)
# one timeframe per family that reaches the 34-bar MACD warm-up in these histories (2D, weeks),
# and 1M (never seeded: every run computes those series from their first bar)
VARS = {"timeframes": ["1D", "2D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "1W_CAL_ANCHOR_US", "1W_CAL_ANCHOR_ISO"]}

operation = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 2), st.integers(1, 10)),
    st.tuples(st.just("correct"), st.integers(1, 2), st.integers(0, 400)),
    st.tuples(st.just("fill_gap"), st.integers(1, 2), st.integers(0, 400)),
    st.tuples(st.just("backfill"), st.integers(1, 2), st.integers(1, 15)),
    st.tuples(st.just("delete"), st.integers(1, 2), st.integers(0, 400)),
    st.tuples(st.just("invalidate"), st.integers(1, 2), st.integers(0, 400)),
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(st.integers(1, 300), max_size=4),
    length=st.integers(250, 330),
    ops=st.lists(st.lists(operation, min_size=1, max_size=3), min_size=1, max_size=3),
)
def test_features_incremental_equals_full_refresh(project, gaps, length, ops):
    project.execute("drop table if exists price_histories cascade")
    project.execute("drop table if exists barsmith_input_fingerprints cascade")
    project.dbt(["seed"])
    history = initial_history(gaps, length)
    with project.connection.connect() as conn:
        write_rows(conn, history.rows(), load_ts=OLD)
    project.run(SELECT, full_refresh=True, vars=VARS)
    for batch in ops:
        with project.connection.connect() as conn:
            for op in batch:
                apply(conn, history, op)
        project.run(SELECT, vars=VARS)
    incremental = assert_equals_full_refresh(
        project, lambda: project.run(SELECT, full_refresh=True, vars=VARS), FEATURES, f"after {ops}")
    assert all(incremental[t] for t in FEATURES), "a features table is empty"
