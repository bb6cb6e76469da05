{{
    config(
        incremental_strategy='replace_ranges',
        range_column='"timestamp"',
        unique_key=['id', 'timestamp'],
        indexes=[
            {'columns': ['id', '"timestamp"'], 'unique': true},
            {'columns': ['id', 'bar_seq'], 'unique': true},
        ],
        pre_hook="{{ barsmith_prepare_ranges('price_bars_1d', price_bars_1d_input(), lookback_days=var('lookback_days', 3)) }}",
        post_hook=[
            "{{ barsmith_record_fingerprints('price_bars_1d') }}",
            "{{ barsmith_create_index_once('price_bars_1d_id_time_close', '(id, time_close)') }}",
            "{{ barsmith_audit() }}",
        ],
        audit_counts={'repaired_timehigh': 'repaired_timehigh', 'repaired_timelow': 'repaired_timelow', 'null_volume_or_market_cap': 'volume is null or market_cap is null', 'repaired_ohlc': 'repaired_ohlc'},
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
