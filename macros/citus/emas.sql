{#- The EMA extension on Citus (macros/emas/ema_walks.sql): a full build's work tables
    <model>__walk_spine and <model>__walk_calls are distributed by id and co-located with the
    source, so each shard's walks (ema_walk, which reads only its arguments) run on the worker that
    holds the shard; the shards are the parallelism (no parallel-worker settings). -#}
{% macro citus__ema_prepare_walk_tables(inputs) %}
    {% if not is_incremental() %}
        drop table if exists {{ ema_walk_relation('calls') }}, {{ ema_walk_relation('spine') }};
        {% set spine_sql %}
            with {{ inputs }}
            select * from spine
        {% endset %}
        {% set calls_sql %}
            with {{ inputs }}
            select * from walk_calls
        {% endset %}
        {{ citus_create_distributed_as(ema_walk_relation('spine'), spine_sql) }};
        {{ citus_create_distributed_as(ema_walk_relation('calls'), calls_sql) }};
    {% endif %}
{% endmacro %}

{#- The resume states of an incremental run (ema_series_state, macros/emas/ema_walks.sql) in the
    work table <model>__state, distributed by id: the probes of the stored rows run once, shard by
    shard, before the walks. Left inlined in the model's query (every CTE is inlined on Citus), the
    states were recomputed for every row that joined them: the planner, short of estimates for the
    nested CTEs, looped the probes per series (700,000 index probes for 800 series, 14 s instead of
    0.1 s at 10 ids). The table exists (empty) before the insert, so the model's CTE series_state
    that reads it parses in the query that fills it. -#}
{% macro citus__ema_prepare_series_state() %}
    {{ barsmith_work_table('state', columns='id integer not null, tf text not null, period integer not null, st '
                                            ~ adapter.quote(target.schema) ~ '.ema_state') }}
    insert into {{ barsmith_work_relation('state') }} (id, tf, period, st)
    {{ citus_inline_ctes('with ' ~ ema_inputs() ~ '\nselect id, tf, period, st from probed_state') }};
    analyze {{ barsmith_work_relation('state') }};
{% endmacro %}

{# The model's series_state CTE on Citus: the states the prepare hook wrote. #}
{% macro citus__ema_stored_series_state() %}
    series_state as (
        select
            id,
            tf,
            period,
            st
        from {{ barsmith_work_relation('state') }}
    ),
{% endmacro %}

{#- ema_closes_after (macros/emas/ema_closes.sql) on Citus: id in the select list of both legs of
    the rolling union (Citus pushes a UNION down only with the distribution column in the same place
    in each branch), `leg` picks one branch; DISTINCT ON with id (pushed down only with the
    distribution column). -#}
{% macro citus__ema_closes_after(kind, bars, p, leg='all') %}
    {%- set lower -%}
        coalesce(({{ p }}.after_day + 1)::timestamp at time zone 'UTC', '-infinity'::timestamptz)
    {%- endset -%}
    {% if kind == 'rolling' %}
        {#- leg (rolling): 'bars' (tf <> 1D), 'daily' (tf 1D) or 'all' (both). id in both branches:
            Citus pushes a UNION down only with the distribution column in the same place in each -#}
        {% if leg != 'daily' %}
            select
                b.id,
                (b.time_close at time zone 'UTC')::date as day,
                b.close
            from {{ ref(bars) }} as b
            where
                {{ p }}.tf <> '1D' and b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
                and b.time_close >= {{ lower }}
        {% endif %}
        {% if leg == 'all' %}
            union all
        {% endif %}
        {% if leg != 'bars' %}
            select
                d.id,
                (d.time_close at time zone 'UTC')::date as day,
                d.close
            from {{ ref('price_bars_1d') }} as d
            where
                {{ p }}.tf = '1D' and d.id = {{ p }}.id and not d.is_partial_end
                and d.time_close >= {{ lower }}
        {% endif %}
    {% elif kind == 'calendar' %}
        select
            s.day,
            s.close
        from {{ ref(bars) }} as b
        cross join lateral (
            select
                (d.time_close at time zone 'UTC')::date as day,
                d.close
            from {{ ref('price_bars_1d') }} as d
            where
                d.id = b.id and not d.is_partial_end
                and d.time_close >= {{ ema_start_ts() }}
                and d.time_close >= ((b.time_close at time zone 'UTC')::date)::timestamp at time zone 'UTC'
                and d.time_close < ((b.time_close at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC'
            -- a fence: one index probe per close. Flattened, the planner (short of close
            -- estimates) scanned the id's whole daily history per (id, tf) and filtered it
            -- against every close: 55 s instead of 0.6 s at 100 x 3000 days
            offset 0
        ) as s
        where
            b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
            and b.time_close >= coalesce(
                ({{ p }}.after_day + 1)::timestamp at time zone 'UTC', '-infinity'::timestamptz
            )
    {% else %}
        -- (distinct on id too: Citus pushes DISTINCT ON down only with the distribution column)
        select distinct on (b.id, b.bar_seq)
            (b.time_close at time zone 'UTC')::date as day,
            b.close
        from {{ ref(bars) }} as b
        where
            b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
            and b.time_close >= {{ lower }}
        order by b.id, b.bar_seq, b.time_close desc
    {% endif %}
{% endmacro %}

{#- ema_close_rows_after_resume on Citus: the rolling closes as a union of two laterals, one per
    leg (Citus cannot push a union inside the lateral down), and no OFFSET fence. -#}
{% macro citus__ema_close_rows_after_resume(kind, bars) %}
    {%- for leg in (['bars', 'daily'] if kind == 'rolling' else ['all']) %}
        {% if not loop.first %}union all{% endif %}
        select
            p.id,
            p.tf,
            c.day,
            c.close
        from (
            select
                f.id,
                t.tf,
                f.from_day as after_day
            from from_day as f
            cross join timeframes as t
        ) as p
        -- (no offset 0 fence: Citus pushes no OFFSET down beside the timeframes' reference table)
        cross join lateral (
            select
                x.day,
                x.close
            from ({{ citus__ema_closes_after(kind, bars, 'p', leg) }}) as x
        ) as c
    {%- endfor %}
{% endmacro %}
