-- Per-id freshness (refresh.md §6, §11.1, OP-R5, OP-R6): newest validated daily bar and the
-- newest day each bar family has consumed, against var('staleness_hours'). Every id of the
-- source appears (reason no_bars when it has no valid bar yet).
with universe as (
    select distinct id
    from {{ ref('stg_price_histories') }}
),

bars as (
    select
        id,
        max("timestamp") as last_bar_ts
    from {{ ref('price_bars_1d') }}
    group by id
),

families as (
    select
        id,
        min(max_ts) filter (where model = 'price_bars_multi_tf') as last_multi_tf_ts,
        min(max_ts) filter (where model = 'price_bars_multi_tf_cal_iso') as last_cal_iso_ts,
        min(max_ts) filter (where model = 'price_bars_multi_tf_cal_us') as last_cal_us_ts,
        min(max_ts) filter (where model = 'price_bars_multi_tf_cal_anchor_iso') as last_cal_anchor_iso_ts,
        min(max_ts) filter (where model = 'price_bars_multi_tf_cal_anchor_us') as last_cal_anchor_us_ts
    from {{ source('barsmith', 'barsmith_input_fingerprints') }}
    group by id
),

measured as (
    select
        u.id,
        b.last_bar_ts,
        extract(epoch from now() - b.last_bar_ts) / 3600.0 as staleness_hours,
        f.last_multi_tf_ts,
        f.last_cal_iso_ts,
        f.last_cal_us_ts,
        f.last_cal_anchor_iso_ts,
        f.last_cal_anchor_us_ts
    from universe as u
    left join bars as b on u.id = b.id
    left join families as f on u.id = f.id
)

select
    id,
    last_bar_ts,
    round(staleness_hours::numeric, 2) as staleness_hours,
    coalesce(staleness_hours <= {{ var('staleness_hours', 48) | float }}, false) as is_fresh,
    case
        when last_bar_ts is null then 'no_bars'
        when staleness_hours <= {{ var('staleness_hours', 48) | float }} then 'fresh'
        else 'stale'
    end as reason,
    last_multi_tf_ts,
    last_cal_iso_ts,
    last_cal_us_ts,
    last_cal_anchor_iso_ts,
    last_cal_anchor_us_ts
from measured
