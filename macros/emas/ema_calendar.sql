{#- ema_multi_tf_cal_<scheme> (emas.md §4) and ema_multi_tf_cal_anchor_<scheme> (§5): the dual
    EMA over calendar bars. ema_bar = bar EMA E = S(B; p) snapped on canonical days, compounding
    alpha_d*x + (1-alpha_d)*ema_bar between them; ema = seeded with E_p on t_p, then compounding
    every day, never snapping. roll_bar = roll = not a canonical day.
      cal:        B = spine close of canonical days; alpha_d = ema_alpha_lookup.alpha_ema_dailyspace
                  (mandatory lookup, OP-7); tf_days = tf_days_nominal (OP-7).
      cal_anchor: B = bar close of the last canonical row per bar; alpha_d = 1-(1-2/(p+1))^(1/d)
                  with d = tf_days_nominal (OP-6); rows only from the seed on (OP-11). -#}
{% macro ema_calendar_inputs(scheme, anchored) %}
    {%- set bars = 'price_bars_multi_tf_cal_' ~ ('anchor_' if anchored else '') ~ scheme | lower -%}
    timeframes as (
        {{ ema_timeframes() }}
    ),

    spine_rows as (
        {{ ema_spine_rows() }}
    ),

    series as (
        select{{ barsmith_keep_subquery() }}
            c.id,
            c.tf,
            t.tf_days,
            p.period,
            {% if anchored %}
                {{ target.schema }}.ema_alpha_daily_eq(t.tf_days, p.period) as alpha_d
            {% else %}
                {{ target.schema }}.ema_require(
                    l.alpha_ema_dailyspace,
                    format('ema_alpha_lookup has no row for tf %s, period %s', c.tf, p.period)
                ) as alpha_d
            {% endif %}
        from {{ ema_closes_relation() }} as c
        inner join timeframes as t on c.tf = t.tf
        cross join lateral unnest({{ ema_periods_array() }}) as p (period)
        {% if not anchored %}
            left join {{ ref('ema_alpha_lookup') }} as l on c.tf = l.tf and p.period = l.period
        {% endif %}
        where c.n_closes >= p.period and {{ ema_combo_filter('c.tf', 'p.period') }}
    ),

    {{ ema_series_state('series', 'dual') }}

    close_rows as (
        -- the closes after each id's resume day (series: macros/emas/ema_closes.sql)
        {{ ema_close_rows_after_resume('anchored' if anchored else 'calendar', bars) }}
    ),

    {{ ema_walk_arrays() }}

    {{ ema_walk_calls([
        ['alphas', target.schema ~ '.ema_alpha_bar(sr.period)'],
        ['alphas_d', 'sr.alpha_d'],
    ], with_closes=true) }}
{% endmacro %}

{% macro ema_calendar_model(scheme, anchored) %}
    {%- set bars = 'price_bars_multi_tf_cal_' ~ ('anchor_' if anchored else '') ~ scheme | lower -%}
    {{ ema_config(
        timeframes={'family': 'anchored' if anchored else 'calendar', 'scheme': scheme},
        walk='dual',
        bars=bars,
        closes='anchored' if anchored else 'calendar',
        tags=['ema_cal_anchor' if anchored else 'ema_cal', 'scheme_' ~ scheme | lower],
    ) }}
    {% call ema_walks(ema_calendar_inputs(scheme, anchored), dual=true) %}
        cross join lateral {{ target.schema }}.ema_walk(
            'dual', s.days, s.tss, s.xs, c.bar_days, c.bar_closes,
            c.periods, c.periods, c.alphas, c.alphas_d,
            null, 0, c.states
        ) as w
    {% endcall %}

    select
        id,
        tf,
        ts,
        period,
        tf_days,
        roll,
        ema,
        d1,
        d2,
        d1_roll,
        d2_roll,
        ema_bar,
        d1_bar,
        d2_bar,
        roll as roll_bar,
        d1_roll_bar,
        d2_roll_bar,
        now() as ingested_at
    from walks
{% endmacro %}
