{%- set ema_tables = ['ema_multi_tf', 'ema_multi_tf_v2', 'ema_multi_tf_cal_us', 'ema_multi_tf_cal_iso',
                      'ema_multi_tf_cal_anchor_us', 'ema_multi_tf_cal_anchor_iso'] -%}
{{
    barsmith_config(
        input={'changes_of': ema_tables},
        source_model_column='source_table',
        range_column='"timestamp"',
        unique_key=['source_table', 'id', 'tf', 'period', 'timestamp'],
        table_indexes=[
            {'name': 'key', 'columns': ['source_table', 'id', 'tf', 'period', '"timestamp"'], 'unique': true},
        ],
        change_grain=['id', 'tf', 'period'],
        audit_counts={'ema_rejects': 'true'},
        extension='ema_rejects',
        tags=['ema_rejects'],
    )
}}
{%- do source('barsmith', 'barsmith_ema_stat_windows') -%}

-- EMA values failing the point-in-time checks of emas.md §7.1 (OP-14, amended), one row per EMA
-- row with the first failing check; reported, never removed from the EMA tables. A run judges
-- the rows the EMA models rewrote since the last one (macros/emas/ema_rejects.sql).
with judged as (
    {{ ema_rejects_judged(ema_tables) }}
),

{% if is_incremental() %}
    first_judged as (
        -- the ids judged and their first instant judged (every id after an EMA table's full
        -- build), from the run's work tables rather than from `judged`, which stays a stream
        select
            id,
            min(first_ts) as first_ts
        from (
            select
                id,
                from_ts as first_ts
            from {{ barsmith_work_relation('rule5_series') }}
            union all
            select
                id,
                '-infinity'::timestamptz
            from {{ ref('price_bars_1d') }}
            where exists (
                    select 1 from {{ barsmith_ranges() }} as r
                    where r.full_build
                )
        ) as f
        group by id
    ),
{% endif %}

price_bounds as (
    -- per id and day: the validated closes of the 90 days up to that day (rule 4); in an
    -- incremental run over the ids judged, from 90 days before the first instant judged
    select
        d.id,
        d.time_close as ts,
        d.close,
        min(d.close) over w as price_min,
        max(d.close) over w as price_max
    from {{ ref('price_bars_1d') }} as d
    {% if is_incremental() %}
        inner join first_judged as j on d.id = j.id and d.time_close >= j.first_ts - interval '90 days'
    {% endif %}
    window w as (partition by d.id order by d.time_close range between interval '90 days' preceding and current row)
),

checked as (
    select
        j.*,
        b.close as source_bar_close,
        b.price_min,
        b.price_max,
        j.stat_mean - 3 * j.stat_std as stat_lower,
        j.stat_mean + 3 * j.stat_std as stat_upper,
        case
            when j.ema is null or j.ema = 'NaN'::float8 then 'nan'
            when j.ema in ('Infinity'::float8, '-Infinity'::float8) then 'infinity'
            when j.ema < 0 then 'negative'
            when j.ema < 0.5 * b.price_min or j.ema > 2.0 * b.price_max then 'out_of_price_bounds'
            when j.stat_n >= 10 and (j.ema::numeric < j.stat_mean - 3 * j.stat_std or j.ema::numeric > j.stat_mean + 3 * j.stat_std)
                then 'out_of_statistical_bounds'
        end as violation_type
    from judged as j
    left join price_bounds as b on j.id = b.id and j.ts = b.ts
)

select
    source_table,
    id,
    tf,
    period,
    ts as "timestamp",
    ema as ema_value,
    violation_type,
    {{ barsmith_case('violation_type') }}
        {{ barsmith_when('violation_type', "'out_of_price_bounds'") }}
            then jsonb_build_object('price_min', price_min, 'price_max', price_max)
        {{ barsmith_when('violation_type', "'out_of_statistical_bounds'") }}
            then jsonb_build_object(
                    'stat_mean', stat_mean::float8,
                    'stat_std', stat_std::float8,
                    'stat_lower', stat_lower::float8,
                    'stat_upper', stat_upper::float8
                )
        else '{}'::jsonb
    end as bounds_info,
    source_bar_close,
    now() as created_at
from checked
where violation_type is not null
