{#- Validated daily rows of bars.md §5: every source row of the ranges to recompute, with its
    repaired values (§5.3) and the reason it is rejected (§5.4), NULL when it is a valid bar.
    bar_seq is the rank of "timestamp" over all source rows of the id (OP-14): an incremental
    run counts the id's rows before the range and numbers the range's rows from there. NULL volume / market_cap
    are not defects (OP-11, decided): such rows are valid bars.

    Reasons (first match wins): the reference's, in its order (§5.4), then barsmith's own, in this
    order (rules in models/bars/_bars.yml and the README):
      duplicate_local_day       two or more source rows of the id on one local day (var bars_tz):
                                every row of the group is rejected, none is guessed to be right
      non_finite_value          NaN or ±Infinity in open, high, low, close, volume or marketcap, or
                                ±infinity in timeopen / timeclose
      value_out_of_range        a nonzero open, high, low, close, volume or marketcap outside
                                [1e-18, 1e18] in absolute value (price_bars_1d_value_bound())
      negative_volume           volume < 0
      negative_market_cap       marketcap < 0
      timestamp_not_time_close  "timestamp" <> timeclose (e.g. a mid-day quote)
      future_timestamp          "timestamp" later than the run's start (price_bars_1d_now()); the
                                row becomes a bar on the first run after that instant
    A source without its primary key could hold one (id, "timestamp") twice: such rows share a
    local day, are rejected as duplicate_local_day, and only the first of them (by load_ts
    descending, then the row's text) is written, the tables being keyed (id, "timestamp"). -#}

{#- The instant that decides future_timestamp: the start of the dbt invocation, one value for
    both 1D models of a run (now() differs per model transaction). -#}
{% macro price_bars_1d_now() -%}
    {{ sql_string(run_started_at.isoformat()) }}::timestamptz
{%- endmacro %}

{#- value_out_of_range: |value| must be 0 or within [1 / bound, bound]. With bound = 1e18, any
    product of up to 16 such values lies within [1e-288, 1e288], so a sum of up to 100,000 of them
    stays below 1e293 (double precision ends at 1.8e308, PostgreSQL raises "value out of range:
    overflow") and no nonzero product rounds to 0 (PostgreSQL raises "... underflow" then; the
    smallest normal double is 2.2e-308). Real daily data is far inside: market caps ~1e13 USD,
    the smallest token prices ~1e-12. -#}
{% macro price_bars_1d_value_bound() -%}
    1e18
{%- endmacro %}

{#- Predicates on a source row (columns open, high, low, close, volume, marketcap, timeopen,
    timeclose); shared by the 1D rows and the raw daily input of the families. -#}
{% macro price_bars_1d_non_finite() -%}
    (
        {%- for c in ['open', 'high', 'low', 'close', 'volume', 'marketcap'] %}
            {{ c }} in ('NaN'::double precision, 'Infinity'::double precision, '-Infinity'::double precision) or
        {%- endfor %}
        not isfinite(timeopen) or not isfinite(timeclose)
    )
{%- endmacro %}

{% macro price_bars_1d_out_of_range() -%}
    (
        {%- for c in ['open', 'high', 'low', 'close', 'volume', 'marketcap'] %}
            ({{ c }} <> 0 and (abs({{ c }}) > {{ price_bars_1d_value_bound() }}
                or abs({{ c }}) < 1 / {{ price_bars_1d_value_bound() }}::double precision)){% if not loop.last %} or{% endif %}
        {%- endfor %}
    )
{%- endmacro %}

{% macro price_bars_1d_rows() %}
    {% if is_incremental() %}
        -- only the rows of the ranges are read, plus the 25 hours before each range: the local day
        -- of a range's first row can start up to 25 h earlier (DST) and all its rows count for
        -- duplicate_local_day. bar_seq continues from the number of the id's source rows before
        -- the range (a count, not a window over the whole history).
        with source_rows as (
            select
                s.*,
                r.from_ts,
                count(*) over (partition by s.id, s.ld) as n_in_local_day,
                row_number() over (
                    partition by s.id, s."timestamp" order by s.load_ts desc, s::text
                ) as n_of_key
            from {{ ref('stg_price_histories') }} as s
            inner join {{ barsmith_ranges() }} as r
                on s.id = r.id and s."timestamp" >= r.from_ts - interval '25 hours'
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
                coalesce(b.n, 0) + row_number() over (
                    partition by source_rows.id order by source_rows."timestamp", source_rows.n_of_key
                ) as bar_seq
            from source_rows
            left join rows_before as b on source_rows.id = b.id
            where source_rows."timestamp" >= source_rows.from_ts
        ),
    {% else %}
        with source_rows as (
            select
                *,
                count(*) over (partition by id, ld) as n_in_local_day,
                row_number() over (partition by id, "timestamp" order by load_ts desc, s::text) as n_of_key
            from {{ ref('stg_price_histories') }} as s
            where {{ asset_filter('id') }}
        ),

        in_range as (
            select
                *,
                row_number() over (partition by id order by "timestamp", n_of_key) as bar_seq
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
        -- one row per key (a second row of one (id, "timestamp") exists only without the PK)
        where n_of_key = 1
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
                when n_in_local_day > 1 then 'duplicate_local_day'
                when {{ price_bars_1d_non_finite() }} then 'non_finite_value'
                when {{ price_bars_1d_out_of_range() }} then 'value_out_of_range'
                when volume < 0 then 'negative_volume'
                when marketcap < 0 then 'negative_market_cap'
                when "timestamp" <> timeclose then 'timestamp_not_time_close'
                when "timestamp" > {{ price_bars_1d_now() }} then 'future_timestamp'
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
        -- §5.3 rule 4 changed the high or the low (a raw high < low, or an extreme outside
        -- [open, close] after rules 2-3): the repair is kept and flagged
        (high_repaired is distinct from high_1 or low_repaired is distinct from low_1) as repaired_ohlc,
        reason
    from checked
{% endmacro %}

{#- Input of the 1D models for range detection: (id, ts, changed_at) of the source rows.
    changed_at is the instant the row's classification last changed, never later than the run's
    start (price_bars_1d_now(), "now" below):
      - a row dated in the future: least(load_ts, now);
      - a current row: least(greatest(load_ts, "timestamp"), now), so a row that was in the
        future at the last run (its "timestamp" was then later than that run's start, which
        bounds every marker that run saw) looks changed on the first run after its time has come;
      - every row of a local day holding two or more rows of the id: now. A row added on an
        existing day (even with an old load_ts from its file, even after the id's newest instant)
        re-reads the day's first row, whatever var lookback_days; while the duplicate stays, each
        run re-reads the id from its earliest duplicated day (1D rows only: the bars it writes are
        unchanged, so the families see no change).
    A row loaded while a run is under way (load_ts later than its start) is re-read once more by
    the next run. -#}
{% macro price_bars_1d_input() -%}
    select
        id,
        "timestamp" as ts,
        case
            when count(*) over (partition by id, ld) > 1 then {{ price_bars_1d_now() }}
            else least(
                greatest(load_ts, case when "timestamp" <= {{ price_bars_1d_now() }} then "timestamp" end),
                {{ price_bars_1d_now() }}
            )
        end as changed_at
    from {{ ref('stg_price_histories') }}
    where {{ asset_filter('id') }}
{%- endmacro %}

{#- Hook `input_rows` of the 1D models (extension bars_1d): their input rows with the computed change
    marker of price_bars_1d_input. -#}
{% macro bars_1d_input_rows(node_config=none) -%}
    {{ price_bars_1d_input() }}
{%- endmacro %}
