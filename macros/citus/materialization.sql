{#- The steps of barsmith_incremental (default__barsmith_materialize, macros/incremental/steps.sql)
    that differ on Citus: the model's rows are written to tables distributed by id and co-located
    with the source:
      full build   the table is created empty from the model's columns (WITH NO DATA), distributed,
                   then filled with INSERT ... SELECT, which Citus runs on every shard at once (dbt's
                   CREATE TABLE AS would build a local table on the coordinator);
      incremental  the new rows go to the work table <model>__new, distributed the same way, and
                   the replace step deletes and inserts shard by shard;
    every CTE of the model is inlined (citus_inline_ctes), statements run one by one
    (citus__barsmith_run, macros/citus/engine.sql), and the run's work tables (ranges, waiting
    ids, new rows, EMA close counts and resume states) are dropped before the commit. -#}
{% macro citus__barsmith_model_sql(sql) %}
    {{ return(citus_inline_ctes(sql)) }}
{% endmacro %}

{% macro citus__barsmith_new_rows_relation() %}
    {{ return(barsmith_work_relation('new')) }}
{% endmacro %}

{% macro citus__barsmith_create_model_table(relation, select_sql) %}
    {% do citus_create_model_table(relation, select_sql) %}
    {% call statement('main') %}
        insert into {{ relation }}
        {{ select_sql }}
    {% endcall %}
{% endmacro %}

{% macro citus__barsmith_create_new_rows(new_rows, select_sql) %}
    {% do barsmith_run('drop table if exists ' ~ new_rows) %}
    {% do citus_create_model_table(new_rows, select_sql, unlogged=true) %}
    {% do barsmith_run('insert into ' ~ new_rows ~ '\n' ~ select_sql) %}
{% endmacro %}

{#- An empty table with the model's columns (WITH NO DATA: the query is not planned), its id of
    the source's type (integer), distributed by id and co-located with the source. -#}
{% macro citus_create_model_table(relation, query, unlogged=false) %}
    {% do barsmith_run('create ' ~ ('unlogged ' if unlogged else '') ~ 'table ' ~ relation ~ ' as\n' ~ query ~ '\nwith no data') %}
    {%- set id_type = run_query("select format_type(atttypid, atttypmod) from pg_attribute where attrelid = to_regclass("
                                ~ citus_name(relation) ~ ") and attname = 'id'").columns[0].values() -%}
    {% if id_type | length == 0 %}
        {{ exceptions.raise_compiler_error('barsmith on Citus: model ' ~ this.identifier ~ ' has no id column to distribute by') }}
    {% endif %}
    {% if id_type[0] != 'integer' %}
        {#- (ema_multi_tf_v2 selects id::bigint: the values are the source's integer ids) -#}
        {% do barsmith_run('alter table ' ~ relation ~ ' alter column id type integer') %}
    {% endif %}
    {% do barsmith_run(citus_distribute(relation)) %}
{% endmacro %}

{# SQL: drop the run's work tables (those that exist). #}
{% macro citus__barsmith_drop_work_tables() -%}
    drop table if exists
    {%- for kind in ['ranges', 'waiting', 'new', 'closes', 'state'] %}
        {{ barsmith_work_relation(kind) }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- barsmith_waiting_counts as literals: Citus cannot push a scalar subquery down beside the run
    log's aggregates, so the waiting ids are read first. -#}
{% macro citus__barsmith_waiting_counts() %}
    {%- set counts = {} -%}
    {%- for reason in ['upstream', 'stale'] -%}
        {%- set ids = run_query('select jsonb_agg(w.id order by w.id)::text from ' ~ barsmith_waiting()
                                ~ ' as w where w.reason = ' ~ sql_string(reason)).columns[0].values()[0] -%}
        {%- do counts.update({reason ~ '_ids': sql_string(ids) ~ '::jsonb' if ids is not none else 'null::jsonb'}) -%}
    {%- endfor -%}
    {{ return(counts) }}
{% endmacro %}

{#- Ranges of a model that consumes other models' changes (ema_rejects): as
    barsmith_take_changes, in a work table distributed by id (the judging probes the EMA tables
    per series: co-located joins only). A full build's change row has no id; it is kept with id 0
    (every reader tests full_build first). -#}
{% macro citus__barsmith_take_changes(models, full) %}
    {{ barsmith_work_table('ranges', columns='model text, full_build boolean, id integer not null, tf text, '
                                             ~ 'period integer, from_ts timestamptz') }}
    with taken as (
        delete from {{ barsmith_bookkeeping('barsmith_changes') }}
        where model in ({% for m in models %}{{ sql_string(m) }}{% if not loop.last %}, {% endif %}{% endfor %})
        returning model, full_build, id, tf, period, from_ts
    )

    insert into {{ barsmith_ranges() }} (model, full_build, id, tf, period, from_ts)
    select model, full_build, coalesce(id, 0), tf, period, from_ts from taken;
    analyze {{ barsmith_ranges() }};
    {{ barsmith_work_table('waiting', columns='id integer primary key, reason text not null') }}
{% endmacro %}
