{#- Generic data tests used across the project (no dbt packages: dbt deps cannot reach the hub).
    Row-level tests read barsmith_scoped(model): the rows a build wrote, or whole tables in the full
    audit (macros/tests/scope.sql). -#}

{#- Rows violating uniqueness of a column combination: none to scan when a unique index on exactly
    these columns exists (barsmith_unique_index_exists); without one every checked row is. -#}
{% test barsmith_unique_combination(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as n_rows
    from {{ model }}
    where
        {% if model.identifier is defined %}not {{ barsmith_unique_index_exists(model, columns) }} and{% endif %}
        ({{ columns | join(', ') }}) in (
            select {{ columns | join(', ') }} from {{ barsmith_scoped(model) }} as s where s.barsmith_checked
        )
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}

{#- True when `relation` has a valid, non-partial unique index on exactly `columns` (in any order):
    PostgreSQL then guarantees the key, and a uniqueness test need not scan (an uncorrelated
    one-time filter). -#}
{% macro barsmith_unique_index_exists(relation, columns) %}
    {%- set names = columns | map('replace', '"', '') | sort | list -%}
    exists (
        select 1
        from pg_index as i
        where
            i.indrelid = to_regclass({{ sql_string('"' ~ relation.schema ~ '"."' ~ relation.identifier ~ '"') }})
            and i.indisunique and i.indisvalid and i.indpred is null
            and i.indnkeyatts = {{ names | length }}
            and (
                select array_agg(a.attname::text order by a.attname::text collate "C")
                from pg_attribute as a
                where a.attrelid = i.indrelid and a.attnum = any(i.indkey)
            ) = array[{% for c in names %}{{ sql_string(c) }}{% if not loop.last %}, {% endif %}{% endfor %}]::text[]
    )
{%- endmacro %}

{# Rows for which a boolean SQL expression is not true (NULL counts as a failure). #}
{% test barsmith_expression_is_true(model, expression, where_clause="true", column_name=none) %}
    select *
    from {{ barsmith_scoped(model) }} as s
    where s.barsmith_checked and ({{ where_clause }}) and not coalesce(({{ expression }}), false)
{% endtest %}

{# bars.md §1.2 / invariant 1: one source row per (id, local day) (OP-23). #}
{% test barsmith_unique_local_day(model) %}
    with checked as (
        select distinct
            s.id,
            {{ local_day('s."timestamp"') }} as local_day
        from {{ barsmith_scoped(model) }} as s
        where s.barsmith_checked
    )

    select m.id, c.local_day, count(*) as n_rows
    from {{ model }} as m
    inner join checked as c on m.id = c.id and {{ local_day('m."timestamp"') }} = c.local_day
    group by m.id, c.local_day
    having count(*) > 1
{% endtest %}

{# Exact number of rows matching a predicate (used for seed counts per family). #}
{% test barsmith_row_count(model, expected, where_clause='true') %}
    select count(*) as n_rows, {{ expected | int }} as expected
    from {{ model }}
    where {{ where_clause }}
    having count(*) <> {{ expected | int }}
{% endtest %}

{# Rows whose value of a column is not one of the accepted values (NULL allowed unless stated). #}
{% test barsmith_accepted_values(model, column_name, values, allow_null=true) %}
    select {{ column_name }}, count(*) as n_rows
    from {{ barsmith_scoped(model) }} as s
    where
        s.barsmith_checked and
        {% if allow_null %}{{ column_name }} is not null and{% endif %}
        coalesce({{ column_name }}::text not in (
            {%- for v in values %}{{ sql_string(v) }}{% if not loop.last %}, {% endif %}{% endfor -%}
        ), true)
    group by {{ column_name }}
{% endtest %}

{# Rows where any of the listed columns is NULL (one scan instead of one test per column). #}
{% test barsmith_not_null_columns(model, columns) %}
    select *
    from {{ barsmith_scoped(model) }} as s
    where s.barsmith_checked and ({% for c in columns %}{{ c }} is null{% if not loop.last %} or {% endif %}{% endfor %})
{% endtest %}
