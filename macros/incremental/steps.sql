{#- The steps of the barsmith_incremental materialization (macros/materialization/barsmith_incremental.sql,
    docs/architecture.md): the run in order, the replace step, indexes, config and dispatch helpers. -#}

{#- The run in order. The engine-specific steps are dispatched (barsmith_dispatch; on a Citus
    coordinator the citus__ macros of macros/citus/materialization.sql): how statements run
    (barsmith_run), the model's SQL as it is sent (barsmith_model_sql), the relation of the new rows
    and how the model's rows are written (barsmith_create_model_table, barsmith_create_new_rows),
    the run log's waiting ids (barsmith_waiting_counts) and the work tables the run drops
    (barsmith_drop_work_tables). -#}
{% macro default__barsmith_materialize() %}
    {%- set sql = barsmith_model_sql(sql) -%}
    {%- set existing = load_cached_relation(this) -%}
    {%- set target = this.incorporate(type='table') -%}
    {%- set full = not is_incremental() -%}
    {%- set new_rows = barsmith_new_rows_relation() -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% do barsmith_run(barsmith_session_settings()) %}
    {% do barsmith_run(barsmith_prepare_ranges(full)) %}
    {#- nothing changed (no range, no id waiting): the run records that and ends -#}
    {% if not full and not barsmith_has_work() %}
        {% do barsmith_run(barsmith_drop_work_tables()) %}
        {% do barsmith_run(barsmith_record_idle_run(), main=true) %}
        {% do adapter.commit() %}
        {{ return({'relations': [target]}) }}
    {% endif %}
    {% do barsmith_extension_step('prepare', full_build=full) %}

    {% if full %}
        {%- set intermediate = make_intermediate_relation(target) -%}
        {% do drop_relation_if_exists(load_cached_relation(intermediate)) %}
        {% do barsmith_create_model_table(intermediate if existing is not none else target, sql) %}
        {% if existing is not none %}
            {% do adapter.drop_relation(existing) %}
            {% do adapter.rename_relation(intermediate, target) %}
        {% endif %}
        {% do barsmith_run(barsmith_create_indexes(target, only_missing=false)) %}
        {% set written = target %}
    {% else %}
        {% do barsmith_create_new_rows(new_rows, sql) %}
        {% do barsmith_run(barsmith_replace_ranges(target, new_rows), main=true) %}
        {% set written = new_rows %}
    {% endif %}

    {% do barsmith_extension_step('written', new_rows=written, full_build=full) %}
    {% do barsmith_run(barsmith_record_fingerprints()) %}
    {% do barsmith_run(barsmith_record_changes(written, full)) %}
    {% do barsmith_run(barsmith_record_run(written, full, barsmith_waiting_counts())) %}
    {% if full %}
        {% do barsmith_run('analyze ' ~ target) %}
    {% else %}
        {% do barsmith_run(barsmith_create_indexes(target, only_missing=true)) %}
    {% endif %}
    {% do barsmith_extension_step('finish', full_build=full) %}
    {% do barsmith_run(barsmith_drop_work_tables()) %}

    {% do persist_docs(target, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {% do adapter.commit() %}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target]}) }}
{% endmacro %}

{# Whether the ranges or the waiting ids hold anything (one query after step 1). #}
{% macro barsmith_has_work() %}
    {%- set result = run_query('select exists (select 1 from ' ~ barsmith_ranges() ~ ') or exists (select 1 from '
                               ~ barsmith_waiting() ~ ')') -%}
    {{ return(result.columns[0].values()[0]) }}
{% endmacro %}

{#- The run log row of a run that found nothing to do (and the end of the previous run's changes
    for models whose changes are only read by the same run's tests). -#}
{% macro barsmith_record_idle_run() %}
    {% if not config.get('keep_changes_until_consumed', false) %}
        delete from {{ barsmith_bookkeeping('barsmith_changes') }}
        where model = {{ sql_string(this.identifier) }} and invocation_id <> {{ sql_string(invocation_id) }};
    {% endif %}
    insert into {{ barsmith_bookkeeping('barsmith_run_log') }} (invocation_id, model, full_build, rows_written, counts)
    values ({{ sql_string(invocation_id) }}, {{ sql_string(this.identifier) }}, false, 0, '{}'::jsonb)
    on conflict (invocation_id, model) do update set rows_written = 0, counts = '{}'::jsonb
{% endmacro %}

{#- Config helper of every barsmith_incremental model: the materialization plus the lineage of
    the bookkeeping sources it reads and writes. -#}
{% macro barsmith_config() %}
    {%- do barsmith_register_bookkeeping() -%}
    {{ config(materialized='barsmith_incremental', **kwargs) }}
{% endmacro %}

{#- Transaction-local settings of a model run: no JIT (it compiles these plans for seconds while
    small runs execute in milliseconds), memory for window sorts and index builds. -#}
{% macro barsmith_session_settings() %}
    {{ return(barsmith_dispatch('barsmith_session_settings')()) }}
{% endmacro %}

{% macro default__barsmith_session_settings() %}
    set local jit = off;
    set local work_mem = {{ sql_string(var('build_work_mem', '128MB')) }};
    set local maintenance_work_mem = {{ sql_string(var('build_maintenance_work_mem', '512MB')) }};
{% endmacro %}

{# The model's SQL as the materialization sends it (PostgreSQL: as compiled). #}
{% macro barsmith_model_sql(sql) %}
    {{ return(barsmith_dispatch('barsmith_model_sql')(sql)) }}
{% endmacro %}

{% macro default__barsmith_model_sql(sql) %}
    {{ return(sql) }}
{% endmacro %}

{# The relation an incremental run writes its new rows to (PostgreSQL: a temp table). #}
{% macro barsmith_new_rows_relation() %}
    {{ return(barsmith_dispatch('barsmith_new_rows_relation')()) }}
{% endmacro %}

{% macro default__barsmith_new_rows_relation() %}
    {{ return(api.Relation.create(identifier=this.identifier ~ '__new', type='table')) }}
{% endmacro %}

{# A full build: the table `relation` from the model's SELECT, as dbt's 'main' statement. #}
{% macro barsmith_create_model_table(relation, select_sql) %}
    {% do barsmith_dispatch('barsmith_create_model_table')(relation, select_sql) %}
{% endmacro %}

{% macro default__barsmith_create_model_table(relation, select_sql) %}
    {% call statement('main') %}
        {{ get_create_table_as_sql(False, relation, select_sql) }}
    {% endcall %}
{% endmacro %}

{#- An incremental run: the model's SELECT (which reads only the ranges) into `new_rows`, a temp
    table. -#}
{% macro barsmith_create_new_rows(new_rows, select_sql) %}
    {% do barsmith_dispatch('barsmith_create_new_rows')(new_rows, select_sql) %}
{% endmacro %}

{% macro default__barsmith_create_new_rows(new_rows, select_sql) %}
    {% do barsmith_run(barsmith_create_temp_new_rows(new_rows, select_sql)) %}
{% endmacro %}

{% macro barsmith_create_temp_new_rows(new_rows, select_sql) %}
    drop table if exists {{ new_rows }};
    create temp table {{ new_rows }} on commit drop as
    {{ select_sql }};
{% endmacro %}

{#- SQL: drop the run's work tables before the commit (PostgreSQL: nothing, they are temp tables
    dropped at commit). -#}
{% macro barsmith_drop_work_tables() %}
    {{ return(barsmith_dispatch('barsmith_drop_work_tables')()) }}
{% endmacro %}

{% macro default__barsmith_drop_work_tables() %}
    {{ return('') }}
{% endmacro %}

{#- Replace the ranges: delete the target rows of every range that is not a pure append (an
    'append' range has no target rows at or after from_ts), then, for models with parts, every
    target row at or after the first new row of each (id, part) (recomputed rows may start before
    from_ts: at the start of the affected bar), then insert the new rows. The second delete probes
    the unique index once per (id, part): a hash or merge join would read the whole target, which
    the planner chose once its estimates drifted, so it gets no choice. A model of range_mode 'id'
    rebuilds every id it recomputes (from_ts is -infinity): its delete has no instant condition
    (the gap models' range column is a date, and Citus refuses the STABLE date-to-timestamptz
    cast of a column in a DELETE). -#}
{% macro barsmith_replace_ranges(target, new_rows) %}
    {%- set range_column = config.get('range_column') -%}
    {%- set part_column = barsmith_part_column() -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set changes_of = config.get('input').get('changes_of') -%}
    {% if changes_of %}
    {%- set model_column = config.get('source_model_column') %}
    -- the rows of what the upstream models rewrote (config `source_model_column` names the model),
    -- in three statements that each probe the target's unique index (model, id, tf, period, ts)
    -- once per change: a whole model after its full build, an id from an instant on, a series
    -- from an instant on (one statement with an OR joins on the model alone: rows x changes)
    delete from {{ target }} as t
    where t.{{ model_column }} in (select r.model from {{ barsmith_ranges() }} as r where r.full_build);
    set local enable_hashjoin = off;
    set local enable_mergejoin = off;
    delete from {{ target }} as t
    using {{ barsmith_ranges() }} as r
    where
        not r.full_build and r.tf is null
        and t.{{ model_column }} = r.model and t.id = r.id and t.{{ range_column }} >= r.from_ts;
    delete from {{ target }} as t
    using {{ barsmith_ranges() }} as r
    where
        not r.full_build and r.tf is not null
        and t.{{ model_column }} = r.model and t.id = r.id and t.tf = r.tf and t.period = r.period
        and t.{{ range_column }} >= r.from_ts;
    set local enable_hashjoin to default;
    set local enable_mergejoin to default;
    {% else %}
    delete from {{ target }} as t
    using {{ barsmith_ranges() }} as r
    where
        t.id = r.id
        and r.mode <> 'append'
        {% if part_column %}and t.{{ part_column }} = r.part{% endif %}
        and {{ barsmith_extension_call('series_match') or 'true' }}
        {%- if config.get('range_mode', 'range') != 'id' %}
        and t.{{ range_column }} >= r.from_ts
        {%- endif %};
    {% endif %}

    {% if part_column %}
        analyze {{ new_rows }} (id, {{ part_column }}, {{ range_column }});
        set local enable_hashjoin = off;
        set local enable_mergejoin = off;
        delete from {{ target }} as t
        using (
            select id, {{ part_column }}, min({{ range_column }}) as from_ts
            from {{ new_rows }}
            group by id, {{ part_column }}
        ) as n
        where t.id = n.id and t.{{ part_column }} = n.{{ part_column }} and t.{{ range_column }} >= n.from_ts;
        set local enable_hashjoin to default;
        set local enable_mergejoin to default;
    {% endif %}

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ new_rows }};
{% endmacro %}

{#- Indexes of config `table_indexes`, named <table>_<name>. After a full build all are built;
    an incremental run creates the ones missing (a new index in the config). -#}
{% macro barsmith_create_indexes(relation, only_missing) %}
    {%- for ix in config.get('table_indexes', []) %}
        {%- set name = (relation.identifier ~ '_' ~ ix['name'])[:63] -%}
        {%- set definition -%}
            create {{ 'unique ' if ix.get('unique') }}index {{ 'if not exists ' if only_missing }}{{ adapter.quote(name) }}
            on {{ relation }} ({{ ix['columns'] | join(', ') }})
            {%- if ix.get('include') %} include ({{ ix['include'] | join(', ') }}){% endif %}
            {%- if ix.get('where') %} where {{ ix['where'] }}{% endif %}
        {%- endset %}
        {{ definition }};
    {%- endfor %}
{% endmacro %}

{#- The config of another model of the project by name (for waits_for). -#}
{% macro barsmith_node_config(name) %}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == name -%}
        {{ return(node.config) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error('barsmith: waits_for names unknown model ' ~ name) }}
{% endmacro %}

{#- The relation of another model or seed of the project by name. -#}
{% macro barsmith_node_relation(name) %}
    {%- for node in graph.nodes.values() if node.resource_type in ('model', 'seed') and node.name == name -%}
        {{ return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias)) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error('barsmith: unknown model ' ~ name) }}
{% endmacro %}

{#- An extension's hook macro <extension>_<hook>, called with the given arguments; none when the
    model has no extension or the extension has no such hook. -#}
{% macro barsmith_extension_call(hook, node_config=none) %}
    {%- set cfg = node_config or config -%}
    {%- set extension = cfg.get('extension') -%}
    {%- if not extension -%}{{ return(none) }}{%- endif -%}
    {%- set hook_macro = context.get(extension ~ '_' ~ hook) -%}
    {%- if hook_macro is none -%}{{ return(none) }}{%- endif -%}
    {%- if node_config is not none -%}
        {{ return(hook_macro(node_config=node_config, **kwargs)) }}
    {%- endif -%}
    {{ return(hook_macro(**kwargs)) }}
{% endmacro %}

{# Run log entries naming the ids that waited (for an upstream, or stale): JSON arrays or null. #}
{% macro barsmith_waiting_counts() %}
    {{ return(barsmith_dispatch('barsmith_waiting_counts')()) }}
{% endmacro %}

{% macro default__barsmith_waiting_counts() %}
    {%- set counts = {} -%}
    {%- for reason in ['upstream', 'stale'] -%}
        {%- do counts.update({reason ~ '_ids': '(select jsonb_agg(w.id order by w.id) from ' ~ barsmith_waiting()
                              ~ ' as w where w.reason = ' ~ sql_string(reason) ~ ')'}) -%}
    {%- endfor -%}
    {{ return(counts) }}
{% endmacro %}

{#- Run SQL statements in the model's transaction (nothing when the text is blank); main: as dbt's
    'main' statement. -#}
{% macro barsmith_run(statements, main=false) %}
    {% do barsmith_dispatch('barsmith_run')(statements, main) %}
{% endmacro %}

{% macro default__barsmith_run(statements, main=false) %}
    {%- if statements and statements | trim -%}
        {%- if main -%}
            {% call statement('main') %}{{ statements }}{% endcall %}
        {%- else -%}
            {% do run_query(statements) %}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}

{# A step of the extension that returns SQL to run (nothing when the extension has no such hook). #}
{% macro barsmith_extension_step(hook) %}
    {% do barsmith_run(barsmith_extension_call(hook, **kwargs)) %}
{% endmacro %}

{#- Dispatch of barsmith's engine-specific macros: citus__<name> on a Citus coordinator
    (var barsmith_engine = 'citus'), else dbt's adapter.dispatch (postgres__ / default__). -#}
{% macro barsmith_dispatch(name) %}
    {%- if var('barsmith_engine', 'postgres') == 'citus' and context.get('citus__' ~ name) is not none -%}
        {{ return(context['citus__' ~ name]) }}
    {%- endif -%}
    {#- (through a variable: dbt's static macro parser accepts only a literal dispatch name) -#}
    {%- set dispatch = adapter.dispatch -%}
    {{ return(dispatch(name, 'barsmith')) }}
{% endmacro %}
