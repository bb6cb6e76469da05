{#- Data tests of the features models (models/features/_features.yml). -#}

{#- Per value column: the first bar position (0-based, in the (id, tf) series) with a value, and
    when the column may also be NULL after it (besides a non-positive price in the series). -#}
{% macro features_warm_ups() %}
    {{ return({
        'ret': [1, none], 'log_ret': [1, none], 'true_range': [1, none],
        'atr_14': [14, none], 'rsi_14': [14, none], 'rsi_avg_gain_14': [14, none], 'rsi_avg_loss_14': [14, none],
        'realized_vol_20': [20, none], 'realized_vol_20_ann': [20, none],
        'parkinson_vol_20': [19, none], 'parkinson_vol_20_ann': [19, none],
        'garman_klass_vol_20': [19, none], 'garman_klass_vol_20_ann': [19, none],
        'bb_middle_20': [19, none], 'bb_upper_20': [19, none], 'bb_lower_20': [19, none],
        'bb_pct_b_20': [19, 'bb_upper_20 = bb_lower_20'], 'bb_bandwidth_20': [19, none],
        'dist_high_20': [19, none], 'dist_low_20': [19, none],
        'macd_ema_fast_12': [25, none], 'macd_ema_slow_26': [25, none],
        'macd_line': [33, none], 'macd_signal': [33, none], 'macd_hist': [33, none],
    }) }}
{% endmacro %}

{#- NULLs stop exactly at the warm-up: a value before its warm-up is made up, a NULL after it
    (in a series whose prices are all positive) is a missing value. Rows reported with their
    position in the series and the columns that break the rule. Reads the rows a build wrote and
    the 34 rows before them per (id, tf) (barsmith_scoped 'previous:34'): a written row's position
    counted in that window is exact below 34 (the window then starts at the series' first row)
    and at least 34 otherwise, past every warm-up; the whole series is read only for a row with a
    NULL after its warm-up, whose verdict needs every low of the series. -#}
{% test features_warm_up(model) %}
    {%- set warm_ups = features_warm_ups() -%}
    {%- set longest = warm_ups.values() | map(attribute=0) | max -%}
    with positioned as (
        select
            *,
            row_number() over (partition by id, tf order by time_close) - 1 as pos
        from {{ barsmith_scoped(model, 'previous:' ~ (longest + 1)) }} as s
    ),

    checked as (
        select
            id,
            tf,
            time_close,
            pos,
            array_remove(array[
                {%- for column, rule in warm_ups.items() %}
                    case when {{ column }} is not null and pos < {{ rule[0] }} then {{ sql_string(column) }} end
                    {%- if not loop.last %},{% endif %}
                {%- endfor %}
            ], null) as early,
            array_remove(array[
                {%- for column, rule in warm_ups.items() %}
                    case
                        when {{ column }} is null and pos >= {{ rule[0] }}
                            {%- if rule[1] %} and not coalesce({{ rule[1] }}, false){% endif %}
                            then {{ sql_string(column) }}
                    end{% if not loop.last %},{% endif %}
                {%- endfor %}
            ], null) as missing
        from positioned
        where barsmith_checked
    ),

    judged as (
        select
            c.*,
            -- (bool_and(low > 0) over the series: some low, none <= 0)
            cardinality(c.missing) > 0
            and not exists (
                select 1 from {{ model }} as p
                where p.id = c.id and p.tf = c.tf and p.low <= 0
            )
            and exists (
                select 1 from {{ model }} as p
                where p.id = c.id and p.tf = c.tf and p.low is not null
            ) as positive_series
        from checked as c
        where cardinality(c.early) > 0 or cardinality(c.missing) > 0
    )

    select
        id,
        tf,
        time_close,
        pos,
        early || case when positive_series then missing else '{}' end as broken
    from judged
    where cardinality(early) > 0 or positive_series
{% endtest %}

{#- Value ranges: RSI in [0, 100]; true range, ATR and the volatilities >= 0; Bollinger bands
    ordered lower <= middle <= upper; the Wilder averages >= 0. NULLs (warm-up) pass. -#}
{% test features_value_ranges(model) %}
    select *
    from {{ barsmith_scoped(model) }} as s
    where
        s.barsmith_checked
        and (
            not coalesce(rsi_14 between 0 and 100, true)
            or not coalesce(true_range >= 0 and atr_14 >= 0, true)
            or not coalesce(rsi_avg_gain_14 >= 0 and rsi_avg_loss_14 >= 0, true)
            or not coalesce(realized_vol_20 >= 0 and realized_vol_20_ann >= 0, true)
            or not coalesce(parkinson_vol_20 >= 0 and parkinson_vol_20_ann >= 0, true)
            or not coalesce(garman_klass_vol_20 >= 0 and garman_klass_vol_20_ann >= 0, true)
            or not coalesce(bb_lower_20 <= bb_middle_20 and bb_middle_20 <= bb_upper_20, true)
        )
{% endtest %}
