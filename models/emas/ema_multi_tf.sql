{{ ema_model_config('ema_multi_tf', "ema_tf_day_timeframes_sql()", ['ema_multi_tf'], closes=['rolling', 'price_bars_multi_tf']) }}

-- Bar-space EMA over the rolling bars with a one-step daily preview (emas.md §2): canonical
-- days carry the bar EMA E_k (alpha 2/(p+1)), other days alpha*x + (1-alpha)*E*; tf = 1D
-- uses the validated daily bars as closes (§2.3). No synthetic fallback bars (OP-18).
with timeframes as (
    {{ ema_tf_day_timeframes_sql() }}
),

spine_rows as (
    {{ ema_spine_rows() }}
),

series as (
    -- a series exists once its (id, tf) has `period` closes (counts: macros/emas/ema_closes.sql)
    select
        c.id,
        c.tf,
        t.tf_days,
        p.period
    from {{ ema_closes_relation() }} as c
    inner join timeframes as t on c.tf = t.tf
    cross join lateral unnest({{ ema_periods_array() }}) as p (period)
    where c.n_closes >= p.period and {{ ema_combo_filter('c.tf', 'p.period') }}
),

{{ ema_series_state('series', 'preview') }}

close_rows as (
    -- the closes after each id's resume day
    {{ ema_close_rows_after_resume('rolling', 'price_bars_multi_tf') }}
),

{{ ema_walk_arrays() }}

calls as (
    select
        sr.id,
        sr.tf,
        sr.tf_days,
        array_agg(sr.period order by sr.period) as periods,
        array_agg({{ target.schema }}.ema_alpha_bar(sr.period) order by sr.period) as alphas,
        array_agg(st.st order by sr.period) as states
    from series as sr
    inner join series_state as st on sr.id = st.id and sr.tf = st.tf and sr.period = st.period
    group by sr.id, sr.tf, sr.tf_days
),

{% call ema_walks(dual=false) %}
    from calls as c
    inner join spine as s on c.id = s.id
    left join closes as b on c.id = b.id and c.tf = b.tf
    cross join
        lateral {{ target.schema }}.ema_walk(
            'preview', s.days, s.tss, s.xs, b.days, b.closes,
            c.periods, c.periods, c.alphas, c.alphas,
            null, 0, c.states, true
        ) as w
{% endcall %}

select
    id,
    tf,
    ts,
    period,
    ema,
    tf_days,
    roll,
    d1_roll,
    d2_roll,
    d1,
    d2,
    now() as ingested_at
from walks
where {{ ema_walk_rows(dual=false) }}
