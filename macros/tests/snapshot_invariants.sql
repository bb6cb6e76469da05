{#- The invariants of bars.md §10 for the five snapshot families, as one generic test per family
    (snapshot_invariants) plus the two whose severity differs (the clean extremes, warn in raw mode;
    OP-30's closed bars without a canonical row, warn). Each returns the offending rows with the
    rule they break. They read barsmith_scoped(model, 'bars'): the rows a build wrote with the rest of
    their bars and the last row before them, or the whole table in the full audit
    (macros/tests/scope.sql). family: rolling, calendar or anchored. -#}

{% test snapshot_invariants(model, family, week_start=none, input_model=none, timeframes=none) %}
    {%- set anchored = family == 'anchored' -%}
    with scoped as {{ barsmith_materialized_cte() }} (
        select * from {{ barsmith_scoped(model, 'bars') }} as s
    ),

    rows_checked as (
        select * from scoped where barsmith_checked
    ),

    ordered as (
        select
            *,
            lag(bar_seq) over (partition by id, tf order by time_close) as prev_seq,
            lag(volume) over (partition by id, tf, bar_seq order by time_close) as prev_volume,
            lag(count_days) over (partition by id, tf, bar_seq order by time_close) as prev_count_days
        from scoped
    ),

    bars as (
        select
            id,
            tf,
            bar_seq,
            bool_or(barsmith_checked) as checked,
            count(*) as n_rows,
            count(distinct time_open) as n_time_open,
            count(distinct open) as n_open,
            count(distinct tf_days) as n_tf_days,
            count(distinct is_partial_start) as n_partial_start,
            {% if anchored %}count(distinct bar_anchor_offset){% else %}1{% endif %} as n_offsets,
            {% if anchored %}min(bar_anchor_offset){% else %}0{% endif %} as bar_anchor_offset,
            min(count_days) as min_count_days,
            max(count_days) as max_count_days,
            count(*) filter (where not is_partial_end) as n_canonical,
            min(time_open) as time_open,
            min(time_close) as first_close,
            max(time_close) as last_close,
            max(time_close) filter (where not is_partial_end) as canonical_close
        from scoped
        group by id, tf, bar_seq
    ),

    bars_ordered as (
        select
            *,
            lag(last_close) over w as prev_close,
            lag(bar_anchor_offset) over w as prev_offset,
            lag(bar_seq) over w as prev_bar
        from bars
        window w as (partition by id, tf order by bar_seq)
    ),

    violations as (
        -- every value a snapshot row must have
        select 'not_null' as rule, id, tf, bar_seq, time_close from rows_checked
        where
            id is null or tf is null or tf_days is null or bar_seq is null or time_open is null or time_close is null
            or time_high is null or time_low is null or open is null or high is null or low is null or close is null
            or volume is null or count_days is null or count_days_remaining is null or count_missing_days is null

        union all
        -- invariant 5: bar_seq starts at 1 (not calendar) and never decreases; steps of 0 or 1 (not calendar)
        select 'bar_seq_progression', id, tf, bar_seq, time_close from ordered
        where
            barsmith_checked
            and (
                (prev_seq is null and bar_seq <> 1 and {{ 'true' if family != 'calendar' else 'false' }})
                or (prev_seq is null and bar_seq < 1)
                or bar_seq < prev_seq
                {% if family != 'calendar' %}or bar_seq > prev_seq + 1{% endif %}
            )

        union all
        -- invariants 6, 7: constant identity per bar, count_days 1..n, at most one canonical row, the last
        select 'bar_shape', id, tf, bar_seq, last_close from bars
        where
            checked
            and (
                n_time_open <> 1 or n_open <> 1 or n_tf_days <> 1 or n_partial_start <> 1 or n_offsets <> 1
                or min_count_days <> 1 or max_count_days <> n_rows
                or n_canonical > 1
                or (n_canonical = 1 and canonical_close <> last_close)
            )

        union all
        select 'bar_steps', id, tf, bar_seq, time_close from ordered
        where barsmith_checked and (volume < prev_volume or count_days <> coalesce(prev_count_days, 0) + 1)

        union all
        -- invariants 7-9: canonical rule per family, count_days_remaining, tf_days bounds
        select 'canonical_and_lengths', s.id, s.tf, s.bar_seq, s.time_close
        from rows_checked as s
        inner join {{ timeframes }} as d on s.tf = d.tf
        where
            s.count_days_remaining < 0
            or ((s.count_days_remaining = 0) <> (not s.is_partial_end))
            or s.count_days > s.tf_days
            {% if family == 'rolling' %}
                or s.tf_days <> d.tf_qty
                or ((not s.is_partial_end) <> (s.count_days = s.tf_days))
            {% else %}
                or s.tf_days not between d.tf_days_min and d.tf_days_max
                or ((not s.is_partial_end)
                    <> ({{ local_day('s.time_close') }} = {{ local_day('s.time_close') }} + s.count_days_remaining))
            {% endif %}

        union all
        -- every tf is a timeframe of dim_timeframe of this family
        select 'timeframe_of_family', s.id, s.tf, s.bar_seq, s.time_close
        from rows_checked as s
        left join {{ timeframes }} as d on s.tf = d.tf and d.family = {{ sql_string(family) }}
        where d.tf is null

        union all
        -- invariants 10, 11: windows start on the family's boundary; anchored offsets; partial start
        select 'windows', id, tf, bar_seq, time_close
        from (
            select
                *,
                {{ local_day('time_close') }} - (count_days + count_missing_days) + 1 as bar_start_eff
            from rows_checked
        ) as w
        where
            {% if anchored %}
                (is_partial_start and bar_seq <> 1)
                or (tf ~ '^[0-9]+W_' and not is_partial_start
                    and extract(isodow from bar_start_eff)::int <> {{ 1 if week_start == 'monday' else 7 }})
                or (tf ~ '^[0-9]+W_' and mod(bar_anchor_offset, tf_days) <> 0)
                or bar_anchor_offset < 0
            {% else %}
                is_partial_start
                {% if family == 'calendar' %}
                    or (tf ~ '^[0-9]+W_'
                        and extract(isodow from bar_start_eff)::int <> {{ 1 if week_start == 'monday' else 7 }})
                    or (tf ~ '^[0-9]+M_' and extract(day from bar_start_eff) <> 1)
                    or (tf ~ '^[0-9]+Y_' and to_char(bar_start_eff, 'MM-DD') <> '01-01')
                {% endif %}
            {% endif %}

        {% if anchored %}
            union all
            -- anchored invariant 10: offsets strictly increase with bar_seq
            select 'offsets_increase', id, tf, bar_seq, last_close from bars_ordered
            where checked and prev_offset is not null and bar_anchor_offset <= prev_offset
        {% endif %}

        union all
        -- invariant 12: missing-day identities
        select 'missing_day_identities', id, tf, bar_seq, time_close from rows_checked
        where
            count_missing_days <> count_missing_days_start + count_missing_days_interior + count_missing_days_end
            or count_missing_days_end <> 0
            or least(count_missing_days, count_missing_days_start, count_missing_days_interior) < 0
            or is_missing_days <> (count_missing_days > 0)
            or (count_missing_days = 0) <> (missing_days_where is null)
            or (count_missing_days = 0) <> (first_missing_day is null)
            or first_missing_day > last_missing_day
            or last_missing_day >= {{ local_day('time_close') }}

        union all
        -- invariant 13 (hard): price and time relations
        select 'price_relations', id, tf, bar_seq, time_close from rows_checked
        where
            not (high >= greatest(open, close) and low <= least(open, close) and high >= low)
            or not (time_open < time_close and time_low <= time_close)

        {% if input_model and var('bars_daily_source', 'bars_1d') != 'raw' %}
            union all
            -- invariant 15 and coverage (4): close / time_close from the input row of the day, open
            -- from the bar's first row (bars holding a checked row are whole in the scope)
            select 'matches_input', s.id, s.tf, s.bar_seq, s.time_close
            from rows_checked as s
            inner join bars as b on s.id = b.id and s.tf = b.tf and s.bar_seq = b.bar_seq
            left join {{ input_model }} as d on s.id = d.id and s.time_close = d."timestamp"
            left join {{ input_model }} as o on s.id = o.id and b.first_close = o."timestamp"
            where d.id is null or s.close is distinct from d.close or s.open is distinct from o.open
        {% endif %}

        union all
        -- invariant 16: continuity of time_open
        select 'time_open_continuity', id, tf, bar_seq, first_close from bars_ordered
        where
            checked
            and (
                (prev_bar is not null and time_open <> prev_close + interval '1 millisecond')
                or (prev_bar is null and time_open > first_close)
            )
    )

    select * from violations
{% endtest %}

{# Invariant 14 (clean input): time_open <= time_high <= time_close and time_open <= time_low. #}
{% test snapshot_clean_extremes(model) %}
    select id, tf, bar_seq, time_close
    from {{ barsmith_scoped(model) }} as s
    where barsmith_checked and not (time_high between time_open and time_close and time_open <= time_low)
{% endtest %}

{#- OP-30 (warn): closed windows (end before the id's newest day) that have no canonical row.
    A bar's canonical row is its last row, so a scoped run reads only the rows it wrote: a bar
    with a row at or after a change's first instant has its last row there too. -#}
{% test snapshot_closed_bars_without_canonical(model) %}
    with scoped as {{ barsmith_materialized_cte() }} (
        select * from {{ barsmith_scoped(model) }} as s
    ),

    bars as (
        select
            id,
            tf,
            bar_seq,
            bool_or(barsmith_checked) as checked,
            max(time_close) as last_close,
            max({{ local_day('time_close') }} + count_days_remaining) as bar_end,
            bool_and(is_partial_end) as never_canonical
        from scoped
        group by id, tf, bar_seq
    )

    select b.*
    from bars as b
    cross join lateral (
        select max(n.time_close) as newest from {{ model }} as n where n.id = b.id and n.tf = b.tf
    ) as l
    where b.checked and b.never_canonical and b.bar_end < {{ local_day('l.newest') }}
{% endtest %}
