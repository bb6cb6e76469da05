{#- The _state view of a snapshot family (bars.md §9.1, OP-27): per (id, tf) the input window
    last consumed (from the range fingerprints) and the newest row written (an index lookup on
    the family table). Derived, never maintained separately (emas.md OP-15 decision). -#}
{% macro bar_family_state(family_model) %}
    with consumed as (
        select
            id,
            part as tf,
            min_ts as daily_min_seen,
            max_ts as daily_max_seen,
            recorded_at as updated_at
        from {{ source('barsmith', 'barsmith_input_fingerprints') }}
        where model = {{ sql_string(family_model) }}
    )

    select
        c.id,
        c.tf,
        {{ sql_string(var('bars_tz', 'America/New_York')) }}::text as tz,
        c.daily_min_seen,
        c.daily_max_seen,
        l.bar_seq as last_bar_seq,
        l.time_close as last_time_close,
        c.updated_at
    from consumed as c
    left join lateral (
        select
            b.bar_seq,
            b.time_close
        from {{ ref(family_model) }} as b
        where b.id = c.id and b.tf = c.tf
        order by b.time_close desc
        limit 1
    ) as l on true
{% endmacro %}
