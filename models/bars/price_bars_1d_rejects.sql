{{
    config(
        incremental_strategy='replace_ranges',
        range_column='"timestamp"',
        unique_key=['id', 'timestamp'],
        indexes=[{'columns': ['id', '"timestamp"'], 'unique': true}],
        pre_hook="{{ barsmith_prepare_ranges('price_bars_1d_rejects', price_bars_1d_input(), lookback_days=var('lookback_days', 3)) }}",
        post_hook=[
            "{{ barsmith_record_fingerprints('price_bars_1d_rejects') }}",
            "{{ barsmith_audit() }}",
            "{{ price_bars_1d_log_rejects() }}",
        ],
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
