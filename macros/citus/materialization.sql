{#- barsmith_incremental on Citus (macros/citus/engine.sql): the same steps as
    default__barsmith_materialize (macros/incremental/steps.sql), with the model's rows written to
    tables distributed by id and co-located with the source:
      full build   the table is created empty from the model's columns (WITH NO DATA), distributed,
                   then filled with INSERT ... SELECT, which Citus runs on every shard at once (dbt's
                   CREATE TABLE AS would build a local table on the coordinator);
      incremental  the new rows go to the work table <model>__new, distributed the same way, and
                   the replace step deletes and inserts shard by shard;
    and the run's work tables (ranges, waiting ids, new rows, EMA close counts and resume states)
    dropped before the commit. -#}
{% macro citus__barsmith_materialize() %}
    {%- set sql = citus_inline_ctes(sql) -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set target = this.incorporate(type='table') -%}
    {%- set full = not is_incremental() -%}
    {%- set new_rows = barsmith_work_relation('new') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% do citus_run(citus__barsmith_session_settings()) %}
    {% do citus_run(barsmith_prepare_ranges(full)) %}
    {% if not full and not barsmith_has_work() %}
        {% do citus_run(citus_drop_work_tables() ~ ';\n' ~ barsmith_record_idle_run(), main=true) %}
        {% do adapter.commit() %}
        {{ return({'relations': [target]}) }}
    {% endif %}
    {% do citus_run(barsmith_extension_call('prepare', full_build=full)) %}

    {% if full %}
        {%- set intermediate = make_intermediate_relation(target) -%}
        {%- set building = intermediate if existing is not none else target -%}
        {% do drop_relation_if_exists(load_cached_relation(intermediate)) %}
        {% do citus_create_model_table(building, sql) %}
        {% call statement('main') %}
            insert into {{ building }}
            {{ sql }}
        {% endcall %}
        {% if existing is not none %}
            {% do adapter.drop_relation(existing) %}
            {% do adapter.rename_relation(intermediate, target) %}
        {% endif %}
        {% do citus_run(barsmith_create_indexes(target, only_missing=false)) %}
        {% set written = target %}
    {% else %}
        {% do barsmith_run('drop table if exists ' ~ new_rows) %}
        {% do citus_create_model_table(new_rows, sql, unlogged=true) %}
        {% do barsmith_run('insert into ' ~ new_rows ~ '\n' ~ sql) %}
        {% do citus_run(barsmith_replace_ranges(target, new_rows), main=true) %}
        {% set written = new_rows %}
    {% endif %}

    {% do citus_run(barsmith_extension_call('written', new_rows=written, full_build=full)) %}
    {% do citus_run(barsmith_record_fingerprints()) %}
    {% do citus_run(barsmith_record_changes(written, full)) %}
    {% do barsmith_run(barsmith_record_run(written, full, citus_waiting_counts())) %}
    {% if full %}
        {% do barsmith_run('analyze ' ~ target) %}
    {% else %}
        {% do citus_run(barsmith_create_indexes(target, only_missing=true)) %}
    {% endif %}
    {% do citus_run(barsmith_extension_call('finish', full_build=full)) %}
    {% do barsmith_run(citus_drop_work_tables()) %}

    {% do persist_docs(target, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.commit() %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target]}) }}
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
{% macro citus_drop_work_tables() -%}
    drop table if exists
    {%- for kind in ['ranges', 'waiting', 'new', 'closes', 'state'] %}
        {{ barsmith_work_relation(kind) }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- barsmith_waiting_counts as literals: Citus cannot push a scalar subquery down beside the run
    log's aggregates, so the waiting ids are read first. -#}
{% macro citus_waiting_counts() %}
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
