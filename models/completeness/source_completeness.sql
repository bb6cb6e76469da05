{{ gaps_config('month', ['id', 'month']) }}
-- Per id and month: expected sessions, source rows on them, rows on other days (a weekend row of
-- an exchange-listed id) and the percent complete (issue 21).
with {{ gaps_session_ctes() }},

observed as (
    select distinct
        o.id,
        o.ld
    from {{ ref('stg_price_histories') }} as o
    inner join bounds as b on o.id = b.id and o.ld between b.first_day and b.last_day
    where {{ asset_filter('o.id') }}
),

days as (
    select
        coalesce(e.id, o.id) as id,
        coalesce(e.session_date, o.ld) as day,
        e.id is not null as is_expected,
        o.id is not null as is_observed
    from expected as e
    full outer join observed as o on e.id = o.id and e.session_date = o.ld
)

select
    d.id,
    b.calendar,
    date_trunc('month', d.day)::date as month,
    (count(*) filter (where d.is_expected))::integer as expected_sessions,
    (count(*) filter (where d.is_expected and d.is_observed))::integer as observed_rows,
    (count(*) filter (where d.is_observed and not d.is_expected))::integer as extra_rows,
    round(
        100.0 * count(*) filter (where d.is_expected and d.is_observed)
        / nullif(count(*) filter (where d.is_expected), 0),
        2
    ) as pct_complete,
    b.as_of
from days as d
inner join bounds as b on d.id = b.id
group by d.id, b.calendar, date_trunc('month', d.day), b.as_of
