{{
    barsmith_config(
        input={'model': 'stg_price_histories', 'ts': 'timestamp', 'changed_at': 'load_ts'},
        lookback_days=var('lookback_days', 3),
        range_column='"timestamp"',
        unique_key=['id', 'timestamp'],
        table_indexes=[
            {'name': 'key', 'columns': ['id', '"timestamp"'], 'unique': true},
            {'name': 'bar_seq', 'columns': ['id', 'bar_seq'], 'unique': true},
            {'name': 'time_close', 'columns': ['id', 'time_close']},
        ],
        audit_counts={
            'repaired_timehigh': 'repaired_timehigh',
            'repaired_timelow': 'repaired_timelow',
            'repaired_ohlc': 'repaired_ohlc',
            'null_volume_or_market_cap': 'volume is null or market_cap is null',
        },
        extension='bars_1d',
        tags=['bars_1d'],
    )
}}

-- Validated daily bars (bars.md §5): every source row whose repaired values pass §5.4 and
-- barsmith's own checks (macros/bars/price_bars_1d_rows.sql).
with validated as (
    {{ price_bars_1d_rows() }}
),

bars as (
    select * from validated
    where reason is null
)

select
    id,
    "timestamp",
    tf,
    bar_seq,
    time_open,
    time_close,
    time_high,
    time_low,
    open,
    high,
    low,
    close,
    volume,
    market_cap,
    is_partial_start,
    is_partial_end,
    is_missing_days,
    src_name,
    src_load_ts,
    src_file,
    repaired_timehigh,
    repaired_timelow,
    repaired_ohlc
from bars
