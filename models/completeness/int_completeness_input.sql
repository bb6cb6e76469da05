{{ config(materialized='view', tags=['completeness']) }}

-- The input of the completeness models (barsmith_incremental): every source row (id, instant,
-- change marker), and one stand-in row per id of the assets seed that has no source row yet (its
-- gaps are every expected session), so such ids are fingerprinted and recomputed like the others.
select
    id,
    "timestamp" as ts,
    load_ts as changed_at
from {{ ref('stg_price_histories') }}

union all

select
    a.id,
    coalesce(a.start_date::timestamptz, '-infinity'::timestamptz) as ts,
    '-infinity'::timestamptz as changed_at
from {{ ref('assets') }} as a
where not exists (
        select 1 from {{ ref('stg_price_histories') }} as s
        where s.id = a.id
    )
