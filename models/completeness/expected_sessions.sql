{{ config(materialized='ephemeral') }}
-- Every session an id is expected to have a source row for: each day for 24/7 ids, the
-- exchange's sessions (trading_sessions, written by the driver from exchange_calendars: holidays
-- absent, a half day once) closed by as_of for the others. Matched on the row's local day.
with bounds as (
    select * from {{ ref('asset_session_bounds') }}
)

select
    b.id,
    b.calendar,
    b.first_day + g.k as session_date,
    false as is_early_close
from bounds as b
cross join lateral generate_series(0, b.last_day - b.first_day) as g (k)
where b.calendar = '24/7'

union all

select
    b.id,
    b.calendar,
    s.session_date,
    s.is_early_close
from bounds as b
inner join {{ source('calendars', 'trading_sessions') }} as s
    on
        b.calendar = s.calendar
        and b.first_day <= s.session_date
        and b.last_day >= s.session_date
        and b.as_of >= s.close_utc
where b.calendar <> '24/7'
