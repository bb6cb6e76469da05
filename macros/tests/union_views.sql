{#- Data tests of the union views (models/views): a union view holds exactly the rows of its parts,
    and its key (alignment_source + the parts' key) is unique. `parts` maps each alignment_source
    value to the model it reads. -#}

{#- Rows (one per alignment_source) where the view's row count differs from its part's (an empty
    part, e.g. after a timeframe-filtered build, matches no rows in the view), or where an
    alignment_source of the view has no part. A mislabelled or missing branch fails here. -#}
{#- Both tests belong to the full audit (`dbt test`): under `dbt build` a view's test reads nothing
    (barsmith_test_mode 'none'; a view holds no rows a run wrote, its parts are tested). -#}
{% test barsmith_union_row_count(model, parts) %}
    {%- if execute and barsmith_test_mode(model) == 'none' %}
    select null::text as alignment_source where false
    {%- else %}
    with view_counts as (
        select
            alignment_source,
            count(*) as view_rows
        from {{ model }}
        group by alignment_source
    ),

    part_counts as (
        {% for source, part in parts.items() %}
            select
                {{ sql_string(source) }}::text as alignment_source,
                count(*) as part_rows
            from {{ ref(part) }}
            {% if not loop.last %}union all{% endif %}
        {% endfor %}
    )

    select
        coalesce(v.alignment_source, p.alignment_source) as alignment_source,
        coalesce(v.view_rows, 0) as view_rows,
        p.part_rows
    from view_counts as v
    full outer join part_counts as p on v.alignment_source = p.alignment_source
    where coalesce(v.view_rows, 0) is distinct from p.part_rows
    {%- endif %}
{% endtest %}

{#- Duplicate keys (alignment_source + columns) of the view. Once barsmith_union_row_count has
    shown that each alignment_source holds exactly its part's rows, the key is unique iff every
    part is unique on `columns`: a part with a valid unique index on exactly those columns is
    guaranteed by PostgreSQL and not scanned; any other part is grouped in full. -#}
{% test barsmith_union_key_unique(model, parts, columns) %}
    {%- if execute and barsmith_test_mode(model) == 'none' %}
    select null::text as alignment_source where false
    {%- else %}
    {% for source, part in parts.items() %}
        select
            {{ sql_string(source) }}::text as alignment_source,
            {{ columns | join(', ') }},
            count(*) as n_rows
        from {{ model }}
        where
            alignment_source = {{ sql_string(source) }}
            and not {{ barsmith_unique_index_exists(ref(part), columns) }}
        group by {{ columns | join(', ') }}
        having count(*) > 1
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
    {%- endif %}
{% endtest %}
