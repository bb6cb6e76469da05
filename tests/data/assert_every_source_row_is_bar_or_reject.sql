-- bars.md §5.4 with OP-11/OP-12: every source row is in exactly one of price_bars_1d and
-- price_bars_1d_rejects (for the ids of this run). Under `dbt build` the source rows the 1D models
-- (re)processed in this invocation (per id from the first instant they recorded in
-- barsmith_changes, or every row after a full build), else every row (macros/tests/scope.sql).
-- Each source row is looked up in both tables by their unique (id, "timestamp") indexes.
{#- sqlfluff (no dbt graph; tests/sqlfluff_libs/sqlfluff_lint.py) lints the scoped variant -#}
{%- set scoped = sqlfluff_lint is defined or (execute and barsmith_test_mode(ref('price_bars_1d')) == 'changes') %}
with
{%- if scoped %}
    changes as (
        {{ barsmith_latest_changes(['price_bars_1d', 'price_bars_1d_rejects']) }}
    ),

    changed_ids as (
        select
            id,
            min(from_ts) as from_ts
        from changes
        where not full_build
        group by id
    ),
{%- endif %}

source_rows as (
    select
        s.id,
        s."timestamp"
    from {{ ref('stg_price_histories') }} as s
    where
        {{ asset_filter('s.id') }}
        {%- if scoped %}
            and exists (
                select 1 from changes as c
                where c.full_build
            )
        {%- endif %}
    {%- if scoped %}
        union all
        select
            s.id,
            s."timestamp"
        from changed_ids as c
        inner join {{ ref('stg_price_histories') }} as s on c.id = s.id and c.from_ts <= s."timestamp"
        where
            {{ asset_filter('s.id') }}
            and not exists (
                select 1 from changes as f
                where f.full_build
            )
    {%- endif %}
),

placed as (
    select
        s.id,
        s."timestamp",
        (
            select count(*) from {{ ref('price_bars_1d') }} as b
            where b.id = s.id and b."timestamp" = s."timestamp"
        )
        + (
            select count(*) from {{ ref('price_bars_1d_rejects') }} as r
            where r.id = s.id and r."timestamp" = s."timestamp"
        ) as n_placed
    from source_rows as s
)

select
    id,
    "timestamp",
    n_placed
from placed
where n_placed <> 1
