{#- The CTEs an EMA family's walks read (ema_walks: an incremental run inlines them, a full
    build writes them to work tables first, ema_prepare_walk_tables). Each macro ends with
    `spine` (daily arrays per id, ema_walk_arrays) and `calls` / `walk_calls` (one row per
    (id, tf), ema_walk_calls). -#}

{#- ema_multi_tf: series of the rolling timeframes with `period` closes; bar closes from
    price_bars_multi_tf (1D: the validated daily bars), all of them, also those before
    ema_start_date, which clips only the spine (§2.1, OP-22); alpha 2/(p+1). -#}
{% macro ema_multi_tf_inputs() %}
    timeframes as (
        {{ ema_timeframes() }}
    ),

    spine_rows as (
        {{ ema_spine_rows() }}
    ),

    series as (
        -- a series exists once its (id, tf) has `period` closes (counts: macros/emas/ema_closes.sql)
        select{{ barsmith_keep_subquery() }}
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

    {{ ema_walk_calls([['alphas', target.schema ~ '.ema_alpha_bar(sr.period)']], with_closes=true) }}
{% endmacro %}

{#- ema_multi_tf_v2: series whose seed can be formed on the daily spine (OP-3, OP-19), the
    horizon alpha 2/(d*p+1), the window d*p, and each id's first spine position. The spine is
    the id's whole 1D history: ema_start_date does not apply (§3.1, OP-22). -#}
{% macro ema_v2_inputs() %}
    timeframes as (
        {{ ema_timeframes() }}
    ),

    spine_rows as (
        {{ ema_spine_rows(with_pos=true, clip=false) }}
    ),

    n_days as (
        select
            id,
            count(*)::integer as n
        from spine_rows
        group by id
    ),

    series as (
        select{{ barsmith_keep_subquery() }}
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

    {{ ema_walk_calls([
        ['windows', 'sr.tf_days * sr.period'],
        ['alphas', target.schema ~ '.ema_alpha_horizon(sr.tf_days, sr.period)'],
    ], with_closes=false) }}
{% endmacro %}
