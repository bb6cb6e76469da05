{#- Validated daily rows of bars.md §5: every source row of the ranges to recompute, with its
    repaired values (§5.3) and the reason it is rejected (§5.4), NULL when it is a valid bar.
    bar_seq is the rank of "timestamp" over all source rows of the id (OP-14): an incremental
    run counts the id's rows before the range and numbers the range's rows from there. NULL volume / market_cap
    are not defects (OP-11, decided): such rows are valid bars. -#}
{% macro price_bars_1d_rows() %}
    {% if is_incremental() %}
        -- only the rows of the ranges are read; bar_seq continues from the number of the id's
        -- source rows before the range (a count, not a window over the whole history)
        with source_rows as (
            select s.*
            from {{ ref('stg_price_histories') }} as s
            inner join {{ barsmith_ranges() }} as r
                on s.id = r.id and s."timestamp" >= r.from_ts
            where {{ asset_filter('s.id') }}
        ),

        rows_before as (
            select
                r.id,
                count(s.id) as n
            from {{ barsmith_ranges() }} as r
            left join {{ ref('stg_price_histories') }} as s
                on r.id = s.id and s."timestamp" < r.from_ts
            group by r.id
        ),

        in_range as (
            select
                source_rows.*,
                coalesce(b.n, 0) + row_number() over (partition by source_rows.id order by source_rows."timestamp")
                    as bar_seq
            from source_rows
            left join rows_before as b on source_rows.id = b.id
        ),
    {% else %}
        with source_rows as (
            select * from {{ ref('stg_price_histories') }}
            where {{ asset_filter('id') }}
        ),

        in_range as (
            select
                *,
                row_number() over (partition by id order by "timestamp") as bar_seq
            from source_rows
        ),
    {% endif %}

    repair_flags as (
        select
            *,
            coalesce(timehigh is null or timehigh < timeopen or timehigh > timeclose, false)
                as repaired_timehigh,
            coalesce(timelow is null or timelow < timeopen or timelow > timeclose, false)
                as repaired_timelow
        from in_range
    ),

    repaired_extremes as (
        select
            *,
            case
                when not repaired_timehigh then timehigh
                when close >= open then timeclose
                else timeopen
            end as time_high,
            case
                when not repaired_timelow then timelow
                when close <= open then timeclose
                else timeopen
            end as time_low,
            case when repaired_timehigh then greatest(open, close) else high end as high_1,
            case when repaired_timelow then least(open, close) else low end as low_1
        from repair_flags
    ),

    repaired as (
        select
            *,
            greatest(high_1, open, close, low_1) as high_repaired,
            least(low_1, open, close, high_1) as low_repaired
        from repaired_extremes
    ),

    checked as (
        select
            *,
            case
                when id is null or "timestamp" is null then 'null_pk'
                when bar_seq is null then 'null_tf_or_bar_seq'
                when timeopen is null or timeclose is null then 'null_time_open_time_close'
                when open is null or close is null then 'null_open_close'
                when timeopen > timeclose then 'time_open_gt_time_close'
                when time_high is null or time_low is null then 'null_time_high_time_low_after_repair'
                when time_high < timeopen or time_high > timeclose then 'time_high_outside_window_after_repair'
                when time_low < timeopen or time_low > timeclose then 'time_low_outside_window_after_repair'
                when high_repaired is null or low_repaired is null then 'null_ohlc_after_repair'
                when high_repaired < low_repaired then 'high_lt_low_after_repair'
                when high_repaired < greatest(open, close, low_repaired)
                    then 'high_lt_greatest(open,close,low)_after_repair'
                when low_repaired > least(open, close, high_repaired)
                    then 'low_gt_least(open,close,high)_after_repair'
            end as reason
        from repaired
    )

    select
        id,
        "timestamp",
        '1D'::text as tf,
        bar_seq::bigint as bar_seq,
        timeopen as time_open,
        timeclose as time_close,
        time_high,
        time_low,
        open,
        high_repaired as high,
        low_repaired as low,
        close,
        volume,
        marketcap as market_cap,
        false as is_partial_start,
        false as is_partial_end,
        false as is_missing_days,
        name as src_name,
        load_ts as src_load_ts,
        source_file as src_file,
        repaired_timehigh,
        repaired_timelow,
        reason
    from checked
{% endmacro %}

{#- Input of the 1D models for range detection: (id, ts, changed_at) of the source rows. -#}
{% macro price_bars_1d_input() -%}
    select
        id,
        "timestamp" as ts,
        load_ts as changed_at
    from {{ ref('stg_price_histories') }}
    where {{ asset_filter('id') }}
{%- endmacro %}
