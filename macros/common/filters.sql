{#- Run filters. Values arrive as dbt vars that the driver has validated; every value is cast
    here again (|int, quoted literals) so that nothing unvalidated reaches SQL text. -#}

{# A list-valued var; anything else (e.g. a linter's stand-in string) counts as empty. #}
{% macro list_var(name) -%}
    {%- set value = var(name, []) -%}
    {{ return(value if (value is iterable and value is not string and value is not mapping) else []) }}
{%- endmacro %}

{% macro int_list(values) -%}
    {%- set out = [] -%}
    {%- for v in values -%}{%- do out.append(v | int) -%}{%- endfor -%}
    {{ return(out) }}
{%- endmacro %}

{% macro sql_string(value) -%}
    '{{ (value | string).replace("'", "''") }}'
{%- endmacro %}

{# Predicate restricting an id column to var('asset_ids'); `true` when the var is empty. #}
{% macro asset_filter(column) -%}
    {%- set ids = int_list(list_var('asset_ids')) -%}
    {%- if ids | length > 0 -%}
        {{ column }} in ({{ ids | join(', ') }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# Predicate restricting a tf column to var('timeframes'); `true` when the var is empty. #}
{% macro timeframe_filter(column) -%}
    {%- set tfs = list_var('timeframes') -%}
    {%- if tfs | length > 0 -%}
        {{ column }} in ({% for tf in tfs %}{{ sql_string(tf) }}{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# The ids that var('rebuild_ids') asks to rebuild from scratch, as a SQL array literal. #}
{% macro rebuild_ids_array() -%}
    array[{{ int_list(list_var('rebuild_ids')) | join(', ') }}]::integer[]
{%- endmacro %}

{# Local calendar day of a UTC instant in the boundary time zone var('bars_tz') (bars.md §0, OP-24). #}
{% macro local_day(ts_column) -%}
    (({{ ts_column }}) at time zone {{ sql_string(var('bars_tz', 'America/New_York')) }})::date
{%- endmacro %}
