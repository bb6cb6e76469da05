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
    position in the series and the columns that break the rule. -#}
{% test features_warm_up(model) %}
    {%- set warm_ups = features_warm_ups() -%}
    with positioned as (
        select
            *,
            row_number() over (partition by id, tf order by time_close) - 1 as pos,
            bool_and(low > 0) over (partition by id, tf) as positive
        from {{ model }}
    ),

    checked as (
        select
            id,
            tf,
            time_close,
            pos,
            array_remove(array[
                {%- for column, rule in warm_ups.items() %}
                    case
                        when ({{ column }} is not null and pos < {{ rule[0] }})
                            or ({{ column }} is null and pos >= {{ rule[0] }} and positive
                                {%- if rule[1] %} and not coalesce({{ rule[1] }}, false){% endif %})
                            then {{ sql_string(column) }}
                    end{% if not loop.last %},{% endif %}
                {%- endfor %}
            ], null) as broken
        from positioned
    )

    select * from checked
    where cardinality(broken) > 0
{% endtest %}

{#- Value ranges: RSI in [0, 100]; true range, ATR and the volatilities >= 0; Bollinger bands
    ordered lower <= middle <= upper; the Wilder averages >= 0. NULLs (warm-up) pass. -#}
{% test features_value_ranges(model) %}
    select *
    from {{ model }}
    where
        not coalesce(rsi_14 between 0 and 100, true)
        or not coalesce(true_range >= 0 and atr_14 >= 0, true)
        or not coalesce(rsi_avg_gain_14 >= 0 and rsi_avg_loss_14 >= 0, true)
        or not coalesce(realized_vol_20 >= 0 and realized_vol_20_ann >= 0, true)
        or not coalesce(parkinson_vol_20 >= 0 and parkinson_vol_20_ann >= 0, true)
        or not coalesce(garman_klass_vol_20 >= 0 and garman_klass_vol_20_ann >= 0, true)
        or not coalesce(bb_lower_20 <= bb_middle_20 and bb_middle_20 <= bb_upper_20, true)
{% endtest %}
