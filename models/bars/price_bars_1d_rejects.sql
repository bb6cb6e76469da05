{{
    barsmith_config(
        input={'model': 'stg_price_histories', 'ts': 'timestamp', 'changed_at': 'load_ts'},
        lookback_days=var('lookback_days', 3),
        range_column='"timestamp"',
        unique_key=['id', 'timestamp'],
        table_indexes=[{'name': 'key', 'columns': ['id', '"timestamp"'], 'unique': true}],
        extension='bars_1d',
        audit_counts={'rejects': 'true'},
        tags=['bars_1d'],
    )
}}

-- Source rows that fail the 1D acceptance rules (bars.md §5.4) or barsmith's own checks, keyed
-- (id, "timestamp"), holding the current reason (OP-12): re-processing replaces the row, a row
-- that became valid is deleted. The post-hook logs what this run wrote for the run summary.
with validated as (
    {{ price_bars_1d_rows() }}
),

rejects as (
    select * from validated
    where reason is not null
)

select
    id,
    "timestamp",
    tf,
    bar_seq,
    reason,
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
    src_file
from rejects
