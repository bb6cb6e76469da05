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
