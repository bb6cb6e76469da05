{#- Engine switches of the shared SQL (README: Scaling out). var barsmith_engine is 'postgres'
    (the default) or 'citus' (the driver sets it on a Citus coordinator). Every switch renders the
    PostgreSQL text unchanged; on Citus it renders the form that Citus pushes down to the shards. -#}

{#- A simple CASE on `subject` (`case <subject> when <value> then ...`) on PostgreSQL; on Citus
    the searched form (`case when <subject> = <value> then ...`), the form the Citus port was
    tested with (the simple form worked in small probes on Citus 13.2; not tested across the
    whole project). -#}
{% macro barsmith_case(subject) -%}
    case{{ '' if var('barsmith_engine', 'postgres') == 'citus' else ' ' ~ subject }}
{%- endmacro %}

{% macro barsmith_when(subject, value) -%}
    when {{ subject ~ ' = ' if var('barsmith_engine', 'postgres') == 'citus' }}{{ value }}
{%- endmacro %}

{#- Engine-specific steps (README: Scaling out). On a Citus coordinator (var barsmith_engine =
    'citus', set by the driver) these reach the citus__ macros of macros/citus through
    barsmith_dispatch; on PostgreSQL they render the text below. (Macros that model SQL renders
    test the var themselves, so that sqlfluff's renderer, which has no dispatch, reads the
    PostgreSQL text.) -#}

{#- A run's work table <model>__<kind> (ranges, waiting, closes; macros/incremental/ranges.sql): a
    temp table dropped at commit; on Citus a table of the target schema distributed by id, dropped
    by the run. -#}
{% macro barsmith_work_relation(kind) -%}
    {%- if var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ barsmith_dispatch('barsmith_work_relation')(kind) }}
    {%- else -%}
        pg_temp.{{ adapter.quote(this.identifier ~ '__' ~ kind) }}
    {%- endif -%}
{%- endmacro %}

{#- Creates the work table `kind` from the caller's query (a call block), or empty with `columns`. -#}
{% macro barsmith_work_table(kind, columns=none) -%}
    {%- set query = caller() if columns is none else none -%}
    {%- if var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ barsmith_dispatch('barsmith_create_work_table')(kind, query, columns) }}
    {%- else %}
    drop table if exists {{ barsmith_work_relation(kind) }};
    {% if columns -%}
        create temp table {{ adapter.quote(this.identifier ~ '__' ~ kind) }} ({{ columns }}) on commit drop;
    {%- else -%}
        create temp table {{ adapter.quote(this.identifier ~ '__' ~ kind) }} on commit drop as
        {{ query }};
    {%- endif %}
    {% endif -%}
{%- endmacro %}

{#- `<column>, ` on Citus, nothing on PostgreSQL: the distribution column (id) named first in a
    DISTINCT ON, its ORDER BY or the select list of a UNION's branches, which Citus pushes down to
    the shards only with it. -#}
{% macro barsmith_shard_key(column) -%}
    {{ column ~ ', ' if var('barsmith_engine', 'postgres') == 'citus' }}
{%- endmacro %}

{#- `distinct` on Citus in the SELECT of a CTE whose rows are distinct anyway (the EMA series): it
    keeps the CTE a subquery of its own, which PostgreSQL would flatten into the query, and Citus
    then refuses the LIMIT 1 probes of the stored rows that read its timeframe and period (columns
    of a reference table and of unnest()); nothing on PostgreSQL. -#}
{% macro barsmith_keep_subquery() -%}
    {{ ' distinct' if var('barsmith_engine', 'postgres') == 'citus' }}
{%- endmacro %}

{#- The keyword of a data test's CTE over the rows it checks: `materialized` on PostgreSQL (read
    once); nothing on Citus, which pushes the test down to the shards when it can inline it (a
    materialized CTE is collected on the coordinator). -#}
{% macro barsmith_materialized_cte() -%}
    {{ 'materialized' if var('barsmith_engine', 'postgres') != 'citus' }}
{%- endmacro %}

{#- Engine-specific setup at the start of every dbt invocation (on-run-start), and the pre-/post-
    hooks of seeds and models (dbt_project.yml): nothing on PostgreSQL. -#}
{% macro barsmith_engine_setup() -%}
    {%- if var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ barsmith_dispatch('barsmith_engine_setup')() }}
    {%- endif -%}
{%- endmacro %}

{% macro barsmith_engine_hook(when) -%}
    {%- if var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ barsmith_dispatch('barsmith_engine_hook')(when) }}
    {%- endif -%}
{%- endmacro %}
