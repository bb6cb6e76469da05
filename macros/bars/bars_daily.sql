{#- Daily input of the five snapshot families (bars.md §4.1): the validated 1D bars by default
    (OP-2: "timestamp" -> ts, time_high -> timehigh, time_low -> timelow), or the raw source with
    var('bars_daily_source') = 'raw' (rows with NULL open or close excluded, OP-22). Raw mode also
    leaves out the rows the families cannot take: every row of a local day holding two or more
    rows of the id (bars.md §1.2: one row per local day; price_bars_1d rejects them as
    duplicate_local_day) and rows with a non-finite or out-of-range value (non_finite_value,
    value_out_of_range: NaN would spread into every later snapshot row of the bar, 1e308 volumes
    overflow the running sums). -#}
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
        from (
            select
                *,
                count(*) over (partition by id, ld) as n_in_local_day
            from {{ ref('stg_price_histories') }}
            where {{ asset_filter('id') }}
        ) as source_rows
        where
            open is not null and close is not null and n_in_local_day = 1
            and not coalesce({{ price_bars_1d_non_finite() }}, false)
            and not coalesce({{ price_bars_1d_out_of_range() }}, false)
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
