{#- The invariants of bars.md §10 for the five snapshot families, one generic test each.
    `family` is one of rolling, calendar, anchored. Every test returns the offending rows. -#}

{# Invariant 5: bar_seq starts at 1 and never decreases; rolling/anchored step by 0 or 1;
   calendar families may jump over windows without rows. #}
{% test snapshot_bar_seq_progression(model, family) %}
    with ordered as (
        select
            id,
            tf,
            time_close,
            bar_seq,
            lag(bar_seq) over (partition by id, tf order by time_close) as prev_seq
        from {{ model }}
    )

    select *
    from ordered
    where
        (prev_seq is null and bar_seq <> 1 and {{ 'true' if family != 'calendar' else 'false' }})
        or (prev_seq is null and bar_seq < 1)
        or bar_seq < prev_seq
        {% if family != 'calendar' %}or bar_seq > prev_seq + 1{% endif %}
{% endtest %}

{# Invariants 6 and 7: per bar, constant identity columns, count_days 1..n without gaps,
   non-decreasing volume, at most one canonical row and only as the last row. #}
{% test snapshot_bar_shape(model, anchored=false) %}
    with bars as (
        select
            id,
            tf,
            bar_seq,
            count(*) as n_rows,
            count(distinct time_open) as n_time_open,
            count(distinct open) as n_open,
            count(distinct tf_days) as n_tf_days,
            count(distinct is_partial_start) as n_partial_start,
            {% if anchored %}count(distinct bar_anchor_offset){% else %}1{% endif %} as n_offsets,
            min(count_days) as min_count_days,
            max(count_days) as max_count_days,
            count(*) filter (where not is_partial_end) as n_canonical,
            max(time_close) as last_close,
            max(time_close) filter (where not is_partial_end) as canonical_close
        from {{ model }}
        group by id, tf, bar_seq
    ),

    steps as (
        select
            id,
            tf,
            bar_seq,
            volume < lag(volume) over w as volume_decreases,
            count_days <> coalesce(lag(count_days) over w, 0) + 1 as count_gap
        from {{ model }}
        window w as (partition by id, tf, bar_seq order by time_close)
    ),

    step_violations as (
        select
            id,
            tf,
            bar_seq
        from steps
        where volume_decreases or count_gap
        group by id, tf, bar_seq
    )

    select
        b.*,
        s.bar_seq is not null as has_step_violation
    from bars as b
    left join step_violations as s on b.id = s.id and b.tf = s.tf and b.bar_seq = s.bar_seq
    where
        b.n_time_open <> 1 or b.n_open <> 1 or b.n_tf_days <> 1 or b.n_partial_start <> 1 or b.n_offsets <> 1
        or b.min_count_days <> 1 or b.max_count_days <> b.n_rows
        or b.n_canonical > 1
        or (b.n_canonical = 1 and b.canonical_close <> b.last_close)
        or s.bar_seq is not null
{% endtest %}

{# Invariants 7-9: canonical rule per family, count_days_remaining, tf_days bounds. #}
{% test snapshot_canonical_and_lengths(model, family, timeframes) %}
    select s.*
    from {{ model }} as s
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
{% endtest %}

{# Invariants 10 and 11: window starts on the family's boundary; anchored offsets; partial start. #}
{% test snapshot_windows(model, family, week_start) %}
    with rows_with_start as (
        select
            *,
            {{ local_day('time_close') }} - (count_days + count_missing_days) + 1 as bar_start_eff
        from {{ model }}
    )

    select *
    from rows_with_start
    where
        {% if family == 'anchored' %}
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
{% endtest %}

{# Anchored invariant 10: offsets strictly increase with bar_seq. #}
{% test snapshot_offsets_increase(model) %}
    with bars as (
        select distinct
            id,
            tf,
            bar_seq,
            bar_anchor_offset
        from {{ model }}
    ),

    ordered as (
        select
            *,
            lag(bar_anchor_offset) over (partition by id, tf order by bar_seq) as prev_offset
        from bars
    )

    select * from ordered
    where prev_offset is not null and bar_anchor_offset <= prev_offset
{% endtest %}

{# Invariant 12: missing-day identities. #}
{% test snapshot_missing_day_identities(model) %}
    select *
    from {{ model }}
    where
        count_missing_days <> count_missing_days_start + count_missing_days_interior + count_missing_days_end
        or count_missing_days_end <> 0
        or least(count_missing_days, count_missing_days_start, count_missing_days_interior) < 0
        or is_missing_days <> (count_missing_days > 0)
        or (count_missing_days = 0) <> (missing_days_where is null)
        or (count_missing_days = 0) <> (first_missing_day is null)
        or first_missing_day > last_missing_day
        or last_missing_day >= {{ local_day('time_close') }}
{% endtest %}

{# Invariants 13 (hard) and 14 (clean: pass `clean=true`). #}
{% test snapshot_price_relations(model, clean=false) %}
    select *
    from {{ model }}
    where
        not (high >= greatest(open, close) and low <= least(open, close) and high >= low)
        or not (time_open < time_close and time_low <= time_close)
        {% if clean %}
            or not (time_high between time_open and time_close and time_open <= time_low)
        {% endif %}
{% endtest %}

{# Invariant 15 and coverage (4): close / time_close come from the input row of the day, open
   from the bar's first row; every input row of an emitted day has exactly one snapshot per tf. #}
{% test snapshot_matches_input(model, input_model) %}
    with firsts as (
        select distinct on (id, tf, bar_seq)
            id,
            tf,
            bar_seq,
            time_close as first_close
        from {{ model }}
        order by id, tf, bar_seq, time_close
    )

    select s.id, s.tf, s.time_close
    from {{ model }} as s
    left join {{ input_model }} as d on s.id = d.id and s.time_close = d."timestamp"
    left join firsts as f on s.id = f.id and s.tf = f.tf and s.bar_seq = f.bar_seq
    left join {{ input_model }} as o on f.id = o.id and f.first_close = o."timestamp"
    where d.id is null or s.close is distinct from d.close or s.open is distinct from o.open
{% endtest %}

{# Invariant 16: continuity of time_open. #}
{% test snapshot_time_open_continuity(model) %}
    with bars as (
        select
            id,
            tf,
            bar_seq,
            min(time_open) as time_open,
            min(time_close) as first_close,
            max(time_close) as last_close
        from {{ model }}
        group by id, tf, bar_seq
    ),

    ordered as (
        select
            *,
            max(last_close) over (
                partition by id, tf order by bar_seq rows between unbounded preceding and 1 preceding
            ) as prev_close,
            row_number() over (partition by id, tf order by bar_seq) as n
        from bars
    )

    select * from ordered
    where
        (n > 1 and time_open <> prev_close + interval '1 millisecond')
        or (n = 1 and time_open > first_close)
{% endtest %}

{# OP-30 (warn): closed windows (end before the id's newest day) that have no canonical row. #}
{% test snapshot_closed_bars_without_canonical(model) %}
    with last_day as (
        select
            id,
            max(time_close) as newest
        from {{ model }}
        group by id
    ),

    bars as (
        select
            id,
            tf,
            bar_seq,
            max(time_close) as last_close,
            max({{ local_day('time_close') }} + count_days_remaining) as bar_end,
            bool_and(is_partial_end) as never_canonical
        from {{ model }}
        group by id, tf, bar_seq
    )

    select b.*
    from bars as b
    inner join last_day as l on b.id = l.id
    where b.never_canonical and b.bar_end < {{ local_day('l.newest') }}
{% endtest %}
