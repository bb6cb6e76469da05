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
