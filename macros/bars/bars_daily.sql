{#- Daily input of the five snapshot families (bars.md §4.1): the validated 1D bars by default
    (OP-2: "timestamp" -> ts, time_high -> timehigh, time_low -> timelow), or the raw source with
    var('bars_daily_source') = 'raw' (rows with NULL open or close excluded, OP-22). -#}
{% macro bars_daily_source_sql() -%}
    {%- if var('bars_daily_source', 'bars_1d') == 'raw' -%}
        select
            id,
            "timestamp" as ts,
            open,
            high,
            low,
            close,
            volume,
            marketcap as market_cap,
            timehigh,
            timelow,
            load_ts as changed_at
        from {{ ref('stg_price_histories') }}
        where open is not null and close is not null and {{ asset_filter('id') }}
    {%- else -%}
        select
            id,
            "timestamp" as ts,
            open,
            high,
            low,
            close,
            volume,
            market_cap,
            time_high as timehigh,
            time_low as timelow,
            src_load_ts as changed_at
        from {{ ref('price_bars_1d') }}
        where {{ asset_filter('id') }}
    {%- endif -%}
{%- endmacro %}

{#- The input of int_bars_daily_prep for barsmith_incremental (same rows as bars_daily_source_sql):
    the validated 1D bars, or the raw source rows with an open and a close. -#}
{% macro bars_daily_input_spec() -%}
    {%- if var('bars_daily_source', 'bars_1d') == 'raw' -%}
        {{ return({'model': 'stg_price_histories', 'ts': 'timestamp', 'changed_at': 'load_ts',
                   'where': 'open is not null and close is not null'}) }}
    {%- else -%}
        {{ return({'model': 'price_bars_1d', 'ts': 'timestamp', 'changed_at': 'src_load_ts'}) }}
    {%- endif -%}
{%- endmacro %}
