{{ ema_model_config('ema_multi_tf_v2', "ema_v2_timeframes_sql()", ['ema_v2'], v2=true) }}

-- Daily-space EMA with the horizon alpha 2/(d*p+1) on the validated daily closes
-- (emas.md §3); roll = false on every d-th spine day counted from the id's first day.
-- Period eligibility = the seed can be formed (OP-3, OP-19), scaled by var('ema_min_obs_multiplier').
with timeframes as (
    {{ ema_v2_timeframes_sql() }}
),

spine_rows as (
    {{ ema_spine_rows(with_pos=true) }}
),

n_days as (
    select
        id,
        count(*)::integer as n
    from spine_rows
    group by id
),

series as (
    select
        n_days.id,
        t.tf,
        t.tf_days,
        p.period
    from n_days
    cross join timeframes as t
    cross join lateral unnest({{ ema_periods_array(v2=true) }}) as p (period)
    where
        n_days.n >= t.tf_days * p.period
        and n_days.n / t.tf_days >= {{ var('ema_min_obs_multiplier', 1) | int }} * p.period
        and n_days.n >= {{ var('ema_min_obs_multiplier', 1) | int }} * p.period
        and {{ ema_combo_filter('t.tf', 'p.period') }}
),

{{ ema_series_state('series', 'daily') }}

{{ ema_walk_arrays(with_closes=false) }}

calls as (
    select
        sr.id,
        sr.tf,
        sr.tf_days,
        array_agg(sr.period order by sr.period) as periods,
        array_agg(sr.tf_days * sr.period order by sr.period) as windows,
        array_agg({{ target.schema }}.ema_alpha_horizon(sr.tf_days, sr.period) order by sr.period) as alphas,
        array_agg(st.st order by sr.period) as states
    from series as sr
    inner join series_state as st on sr.id = st.id and sr.tf = st.tf and sr.period = st.period
    group by sr.id, sr.tf, sr.tf_days
),

{% call ema_walks(dual=false) %}
    from calls as c
    inner join spine as s on c.id = s.id
    cross join
        lateral {{ target.schema }}.ema_walk(
            'daily', s.days, s.tss, s.xs, null, null,
            c.periods, c.windows, c.alphas, c.alphas,
            c.tf_days, s.pos0, c.states, true
        ) as w
{% endcall %}

select
    id::bigint as id,
    ts,
    tf,
    period,
    ema,
    now() as ingested_at,
    d1,
    d2,
    tf_days,
    roll,
    d1_roll,
    d2_roll
from walks
where {{ ema_walk_rows(dual=false) }}
