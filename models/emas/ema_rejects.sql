{%- set ema_tables = ['ema_multi_tf', 'ema_multi_tf_v2', 'ema_multi_tf_cal_us', 'ema_multi_tf_cal_iso',
                      'ema_multi_tf_cal_anchor_us', 'ema_multi_tf_cal_anchor_iso'] -%}
{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['source_table', 'id', 'tf', 'period', 'timestamp'],
        pre_hook=[
            "{{ ema_rejects_take_queue(['ema_multi_tf', 'ema_multi_tf_v2', 'ema_multi_tf_cal_us', 'ema_multi_tf_cal_iso', 'ema_multi_tf_cal_anchor_us', 'ema_multi_tf_cal_anchor_iso']) }}",
        ],
        post_hook=["{{ barsmith_audit(where=\"created_at >= \" ~ sql_string(run_started_at.isoformat()) ~ \"::timestamptz\") }}"],
        audit_counts={'ema_rejects': 'true'},
        tags=['ema_rejects'],
    )
}}

-- EMA values outside the bounds of emas.md §7.1, reported with a reason instead of dropped
-- (OP-14). Rows are validated once written (the EMA models queue them: macros/emas/ema_rejects.sql);
-- a rewritten row replaces its old verdict.
-- The statistical check (5) is not applied: see _emas.yml.
with batch as (
    {{ ema_validation_batch(ema_tables) }}
),

recent_prices as (
    select
        id,
        min(close) as price_min,
        max(close) as price_max
    from {{ ref('price_bars_1d') }}
    where time_close >= now() - interval '90 days'
    group by id
),

checked as (
    select
        b.*,
        p.price_min,
        p.price_max,
        case
            when b.ema is null or b.ema = 'NaN'::float8 then 'nan'
            when b.ema in ('Infinity'::float8, '-Infinity'::float8) then 'infinity'
            when b.ema < 0 then 'negative'
            when b.ema < 0.5 * p.price_min or b.ema > 2.0 * p.price_max then 'out_of_price_bounds'
        end as violation_type
    from batch as b
    left join recent_prices as p on b.id = p.id
),

violations as materialized (
    -- filtered before the daily close is looked up: left to itself the planner joins every EMA
    -- row of a full build to price_bars_1d first (a sort of the whole batch)
    select * from checked
    where violation_type is not null
)

select
    c.source_table,
    c.id,
    c.tf,
    c.period,
    c.ts as "timestamp",
    c.ema as ema_value,
    c.violation_type,
    case
        when c.violation_type = 'out_of_price_bounds'
            then jsonb_build_object('price_min', c.price_min, 'price_max', c.price_max)
        else '{}'::jsonb
    end as bounds_info,
    d.close as source_bar_close,
    now() as created_at
from violations as c
left join {{ ref('price_bars_1d') }} as d on c.id = d.id and c.ts = d.time_close
-- a queued value is reported only while its row holds it (a later run may have rewritten or
-- deleted the row: see macros/emas/ema_rejects.sql)
where {{ ema_row_exists(ema_tables, 'c', 'c.ts', 'c.ema') }}
