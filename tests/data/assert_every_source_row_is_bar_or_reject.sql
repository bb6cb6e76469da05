-- bars.md §5.4 with OP-11/OP-12: every source row is in exactly one of price_bars_1d and
-- price_bars_1d_rejects (for the ids of this run). Under `dbt build` the source rows the 1D models
-- (re)processed in this invocation, else every row (macros/tests/scope.sql).
with source_rows as (
    select
        s.id,
        s."timestamp"
    from {{ ref('stg_price_histories') }} as s
    where
        {{ asset_filter('s.id') }}
        and {{ barsmith_changed_since_scope('s', ['price_bars_1d', 'price_bars_1d_rejects'], '"timestamp"') }}
),

placed as (
    select
        id,
        "timestamp"
    from {{ ref('price_bars_1d') }}
    union all
    select
        id,
        "timestamp"
    from {{ ref('price_bars_1d_rejects') }}
),

placed_counts as (
    select
        id,
        "timestamp",
        count(*) as n_placed
    from placed
    group by id, "timestamp"
)

select
    s.id,
    s."timestamp",
    coalesce(p.n_placed, 0) as n_placed
from source_rows as s
left join placed_counts as p on s.id = p.id and s."timestamp" = p."timestamp"
where coalesce(p.n_placed, 0) <> 1
