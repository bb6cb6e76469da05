{#- Output validation of emas.md §7.1 (OP-14) over the EMA rows written by this dbt invocation
    (ingested_at >= run_started_at; every EMA table has a BRIN index on ingested_at), or over
    every row on a full build. First failing check wins:
      nan, infinity, negative, out_of_price_bounds (ema outside [0.5 x min, 2 x max] of the id's
      validated daily closes of the 90 days before now(); skipped without such closes). -#}
{% macro ema_validation_batch(tables) %}
    {%- for t in tables %}
        select
            {{ sql_string(t) }}::text as source_table,
            e.id::integer as id,
            e.tf,
            e.period,
            e.ts,
            e.ema
        from {{ ref(t) }} as e
        {% if is_incremental() %}
            where e.ingested_at >= {{ sql_string(run_started_at.isoformat()) }}::timestamptz
        {% endif %}
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{% endmacro %}
