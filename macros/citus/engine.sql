{#- barsmith on a Citus cluster (README: Scaling out): the citus__ macros that
    barsmith_dispatch picks when var barsmith_engine = 'citus' (the driver sets it when the server
    it connects to has the citus extension; a user of plain dbt sets it with --vars). The models
    are the same; what differs is where the rows live:
      distributed by id, co-located with the source (every join on id runs shard by shard on the
        workers): the source, every barsmith_incremental table, the run's work tables (ranges,
        waiting ids, new rows, EMA close counts and walk tables), barsmith_input_fingerprints,
        barsmith_ema_close_counts, barsmith_ema_stat_windows;
      reference tables (a copy on every node, joinable with any shard): the seeds, the plain
        tables (ema_alpha_lookup), the exchange calendars (trading_sessions,
        trading_calendar_coverage) and barsmith_changes (its full-build rows have no id);
      local tables of the coordinator (read by the driver only): barsmith_run_log,
        barsmith_refresh_runs.
    Every id column that joins must be integer (a distributed table co-locates only with tables
    distributed by the same type): the source's id is integer (driver load creates it so), and a
    model whose SELECT yields another id type (ema_multi_tf_v2: bigint) is stored with the
    source's type. -#}

{#- The source table (dbt source raw.price_histories), the co-location anchor of every table. -#}
{% macro citus_source() -%}
    {{ return(api.Relation.create(database=target.database, schema=var('source_schema', 'public'),
                                  identifier=var('source_table', 'price_histories'))) }}
{%- endmacro %}

{#- A relation as a SQL string literal, schema-qualified (regclass input). -#}
{% macro citus_name(relation) -%}
    {{ return(sql_string(relation | string if relation is string else relation.include(database=false) | string)) }}
{%- endmacro %}

{#- SQL: whether `relation` (a string literal) is a Citus table (distributed or reference). -#}
{% macro citus_is_citus_table(name_literal) -%}
    exists (select 1 from pg_dist_partition where logicalrelid = to_regclass({{ name_literal }}))
{%- endmacro %}

{#- SQL: make `relation` (existing, any rows are moved) distributed by id, co-located with the
    source (distribution 'id'; 'source': the source itself), or a reference table ('reference');
    nothing when it already is one or does not exist. -#}
{% macro citus_distribute(relation, distribution='id') -%}
    {%- set name = citus_name(relation) -%}
    {%- if distribution == 'reference' -%}
        select create_reference_table(to_regclass({{ name }}))
    {%- elif distribution == 'source' -%}
        select create_distributed_table(to_regclass({{ name }}), 'id')
    {%- else -%}
        select create_distributed_table(to_regclass({{ name }}), 'id', colocate_with => {{ citus_name(citus_source()) }})
    {%- endif %}
    where to_regclass({{ name }}) is not null and not {{ citus_is_citus_table(name) }}
    {%- if distribution == 'id' %}
        -- (co-location needs the source: until it exists, e.g. seeds before the first load, the
        -- table stays local and a later run's on-run-start distributes it with its rows)
        and {{ citus_is_citus_table(citus_name(citus_source())) }}
    {%- endif %}
{%- endmacro %}

{#- Transaction-local settings of a model run: SET LOCAL reaches the workers' shard queries only
    with citus.propagate_set_commands = 'local' (jit off, work_mem, the bar families' join
    settings of barsmith_replace_ranges). No local execution: the coordinator holds a copy of
    every reference table, and a statement it ran on that copy itself (ema_rejects' ranges taken
    from barsmith_changes) would refuse a later one on the same table ("a local execution has
    accessed a placement in the transaction"). -#}
{% macro citus__barsmith_session_settings() %}
    set local citus.propagate_set_commands = 'local';
    set local citus.enable_local_execution = off;
    {{ default__barsmith_session_settings() }}
{% endmacro %}

{#- on-run-start: the source and the bookkeeping tables distributed (once; a table that exists
    as a local table, e.g. a source `driver load` filled before, has its rows moved to the
    workers), barsmith_changes a reference table. The source must have an integer id. -#}
{% macro citus__barsmith_engine_setup() %}
    {%- set schema = target.schema -%}
    {%- set src = citus_source() -%}
    do $$
    begin
        if to_regclass({{ citus_name(src) }}) is not null and coalesce((
            select format_type(a.atttypid, a.atttypmod) from pg_attribute as a
            where a.attrelid = to_regclass({{ citus_name(src) }}) and a.attname = 'id'
        ), '') <> 'integer' then
            raise exception 'barsmith on Citus: the source % needs an integer id column to co-locate the models with it',
                {{ citus_name(src) }};
        end if;
    end
    $$;
    {{ citus_distribute(src, 'source') }};
    {%- for name in ['barsmith_input_fingerprints', 'barsmith_ema_close_counts', 'barsmith_ema_stat_windows'] %}
        {{ citus_distribute(adapter.quote(schema) ~ '.' ~ name) }};
    {%- endfor %}
    {{ citus_distribute(adapter.quote(schema) ~ '.barsmith_changes', 'reference') }};
    -- the exchange calendars (macros/completeness/calendars.sql; driver gaps fills them): reference
    -- tables, created here, committed, before any model reads them. (Created by the completeness
    -- models' pre-hook in their own transaction, the local table was invisible to the connection
    -- Citus opens to the coordinator for the distributed part of the query.)
    {{ barsmith_calendar_tables() }}
    {%- for name in ['trading_sessions', 'trading_calendar_coverage'] %}
        {{ citus_distribute(adapter.quote(schema) ~ '.' ~ name, 'reference') }};
    {%- endfor %}
{% endmacro %}

{#- Pre-/post-hooks of seeds and plain tables: reference tables. Their DDL (drop, create,
    create_reference_table) is serialized across dbt's threads by a transaction-level advisory
    lock: parallel drops and re-creations of reference tables deadlock between the nodes. -#}
{% macro citus__barsmith_engine_hook(when) -%}
    {%- if model.resource_type == 'seed' or config.get('materialized') == 'table' -%}
        {%- if when == 'pre' -%}
            {{ return("select pg_advisory_xact_lock(hashtext('barsmith_citus_reference_ddl'))") }}
        {%- else -%}
            {{ return(citus_distribute(this, 'reference')) }}
        {%- endif -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}

{#- A run's work tables live in the target schema (a temp table cannot be distributed); the run
    drops them before it commits (a failed run's transaction takes them with it). -#}
{% macro citus__barsmith_work_relation(kind) -%}
    {{ return(adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier ~ '__' ~ kind)) }}
{%- endmacro %}

{% macro citus__barsmith_create_work_table(kind, query, columns) %}
    {%- set relation = barsmith_work_relation(kind) -%}
    drop table if exists {{ relation }};
    {% if columns -%}
        create unlogged table {{ relation }} ({{ columns }});
        {{ citus_distribute(relation) }};
    {%- else -%}
        {{ citus_create_distributed_as(relation, query) }};
    {%- endif %}
{% endmacro %}

{#- SQL: a new table `relation` with the columns of `query`, distributed (co-located with the
    source) or a reference table, then filled by `query` (dbt's CREATE TABLE AS would collect the
    rows on the coordinator into a local table). WITH NO DATA creates it without planning the
    query. -#}
{% macro citus_create_distributed_as(relation, query, distribution='id', unlogged=true) -%}
    {%- set query = citus_inline_ctes(query) -%}
    create {{ 'unlogged ' if unlogged }}table {{ relation }} as
    {{ query }}
    with no data;
    {{ citus_distribute(relation, distribution) }};
    insert into {{ relation }}
    {{ query }}
{%- endmacro %}

{#- The query with every CTE inlined (NOT MATERIALIZED; a CTE the model marks MATERIALIZED stays
    so): Citus pushes a query down to the shards only through inlined CTEs, and it inlines a CTE
    read more than once only when told so; otherwise it runs the CTE first and collects its rows on
    the coordinator, and then refuses most lateral joins over them ("complex joins are only
    supported when ..."). PostgreSQL never inlines a CTE with side effects or volatile functions,
    so the results are the same; a CTE read twice is computed twice, on each shard. A CTE is a line
    `[with ]<name> as (`. -#}
{% macro citus_inline_ctes(query) -%}
    {{ return(modules.re.sub('(?im)^(\\s*(?:with\\s+)?[a-z_][a-z0-9_]*\\s+as)\\s+\\(\\s*$', '\\1 not materialized (', query)) }}
{%- endmacro %}

{#- barsmith_run on Citus: SQL statements one by one in the model's transaction (main: the last
    one as dbt's 'main' statement). Citus forwards some statements to the other nodes as the whole query string they
    arrived in: DDL on a distributed table (CREATE INDEX, ALTER TABLE), which the workers refuse
    when the string holds several statements ("cannot insert multiple commands into a prepared
    statement"), and SET LOCAL (citus.propagate_set_commands), which a worker would run whole, the
    other statements included. So the text is split at every top-level semicolon (quotes, dollar
    quotes and comments respected); pieces holding only comments are dropped. -#}
{% macro citus__barsmith_run(statements, main=false) %}
    {%- set pattern = "'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\\n]*|/\\*.*?\\*/|\\$(\\w*)\\$.*?\\$\\1\\$|;|[^;'\"$/-]+|." -%}
    {%- set found = [] -%}
    {%- set current = [] -%}
    {%- for m in modules.re.finditer(pattern, statements or '', modules.re.S) -%}
        {%- if m.group(0) == ';' -%}
            {%- do found.append(current | join('')) -%}
            {%- do current.clear() -%}
        {%- else -%}
            {%- do current.append(m.group(0)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do found.append(current | join('')) -%}
    {%- set commands = [] -%}
    {%- for one in found if modules.re.sub('--[^\\n]*', '', one) | trim -%}{%- do commands.append(one) -%}{%- endfor -%}
    {%- for one in commands -%}
        {%- if main and loop.last -%}
            {% call statement('main') %}{{ one }}{% endcall %}
        {%- else -%}
            {% do run_query(one) %}
        {%- endif -%}
    {%- endfor -%}
{% endmacro %}
