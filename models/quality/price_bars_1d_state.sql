-- Per-id bookkeeping of the 1D family (bars.md §5.5), derived from the tables themselves
-- (emas.md OP-15 decision, bars.md OP-27). Counters are totals of the current tables, not of the
-- last run only (the reference's last_* counters describe one run; see _quality.yml).
with bars as (
    select
        id,
        max("timestamp") as last_src_ts,
        min("timestamp") as min_bar_ts,
        count(*) as n_bars,
        count(*) filter (where repaired_timehigh) as n_repaired_timehigh,
        count(*) filter (where repaired_timelow) as n_repaired_timelow
    from {{ ref('price_bars_1d') }}
    group by id
),

rejects as (
    select
        id,
        min("timestamp") as min_reject_ts,
        count(*) as n_rejected
    from {{ ref('price_bars_1d_rejects') }}
    group by id
),

runs as (
    select
        id,
        max(recorded_at) as last_run_ts
    from {{ source('barsmith', 'barsmith_input_fingerprints') }}
    where model = 'price_bars_1d'
    group by id
),

ids as (
    select id from bars
    union
    select id from rejects
)

select
    ids.id,
    bars.last_src_ts,
    least(bars.min_bar_ts, rejects.min_reject_ts) as daily_min_seen,
    runs.last_run_ts,
    coalesce(bars.n_bars, 0) as last_upserted,
    coalesce(bars.n_repaired_timehigh, 0) as last_repaired_timehigh,
    coalesce(bars.n_repaired_timelow, 0) as last_repaired_timelow,
    coalesce(rejects.n_rejected, 0) as last_rejected
from ids
left join bars on ids.id = bars.id
left join rejects on ids.id = rejects.id
left join runs on ids.id = runs.id
