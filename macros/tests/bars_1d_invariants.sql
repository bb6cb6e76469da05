{#- The 1D invariants of bars.md §10 (2, 17): every value present, tf = '1D', the snapshot flags
    false, extreme instants inside [time_open, time_close], high >= greatest(open, close, low) and
    low <= least(open, close, high). Keys: the table's unique indexes. Reads the rows a build wrote,
    or the whole table in the full audit (macros/tests/scope.sql). -#}
{% test bars_1d_invariants(model) %}
    with checked as (
        select * from {{ barsmith_scoped(model) }} as s
        where barsmith_checked
    )

    select 'not_null' as rule, id, "timestamp" from checked
    where
        id is null or "timestamp" is null or bar_seq is null or time_open is null or time_close is null
        or time_high is null or time_low is null or open is null or high is null or low is null or close is null
        or src_load_ts is null or repaired_timehigh is null or repaired_timelow is null or repaired_ohlc is null

    union all
    select 'tf_and_flags', id, "timestamp" from checked
    where tf is distinct from '1D' or is_partial_start or is_partial_end or is_missing_days

    union all
    select 'extremes_inside_window', id, "timestamp" from checked
    where not (time_open <= time_close and time_high between time_open and time_close
               and time_low between time_open and time_close)

    union all
    select 'ohlc_relations', id, "timestamp" from checked
    where not (high >= greatest(open, close, low) and low <= least(open, close, high) and high >= low)
{% endtest %}
