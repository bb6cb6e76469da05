-- Issue 21: the sessions missing in source_gaps are exactly the expected sessions without a row
-- counted by source_completeness, per id.
with gap_totals as (
    select
        id,
        sum(sessions_missing) as missing
    from {{ ref('source_gaps') }}
    group by id
),

month_totals as (
    select
        id,
        sum(expected_sessions - observed_rows) as missing
    from {{ ref('source_completeness') }}
    group by id
)

select
    coalesce(g.id, m.id) as id,
    coalesce(g.missing, 0) as missing_in_gaps,
    coalesce(m.missing, 0) as missing_in_completeness
from gap_totals as g
full outer join month_totals as m on g.id = m.id
where coalesce(g.missing, 0) <> coalesce(m.missing, 0)
