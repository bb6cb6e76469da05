{{ gaps_config('first_missing_session', ['id', 'first_missing_session']) }}
-- Runs of consecutive expected sessions without a source row, per id (issue 21). A run is
-- consecutive in the calendar's sessions, so a weekend or holiday inside an exchange gap does not
-- split it. gap_days counts calendar days from the first to the last missing session;
-- severity: CRITICAL past var gap_critical_days (7), WARNING past var gap_warning_sessions (1).
with {{ gaps_session_ctes() }},

observed as (
    select distinct
        id,
        ld
    from {{ ref('stg_price_histories') }}
    where {{ asset_filter('id') }}
),

marked as (
    select
        e.id,
        e.calendar,
        e.session_date,
        e.is_early_close,
        o.id is null as is_missing,
        row_number() over (partition by e.id order by e.session_date) as session_seq,
        max(e.session_date) over (partition by e.id) as last_expected
    from expected as e
    left join observed as o on e.id = o.id and e.session_date = o.ld
),

missing as (
    select
        id,
        calendar,
        session_date,
        is_early_close,
        last_expected,
        session_seq - row_number() over (partition by id order by session_date) as island
    from marked
    where is_missing
),

gaps as (
    select
        id,
        calendar,
        min(session_date) as first_missing_session,
        max(session_date) as last_missing_session,
        count(*)::integer as sessions_missing,
        (count(*) filter (where is_early_close))::integer as early_closes_missing,
        max(session_date) = max(last_expected) as is_trailing
    from missing
    group by id, calendar, island
)

select
    g.id,
    g.calendar,
    g.first_missing_session,
    g.last_missing_session,
    g.sessions_missing,
    g.last_missing_session - g.first_missing_session + 1 as gap_days,
    g.early_closes_missing,
    g.is_trailing,
    case
        when g.last_missing_session - g.first_missing_session + 1 > {{ var('gap_critical_days', 7) | int }}
            then 'CRITICAL'
        when g.sessions_missing > {{ var('gap_warning_sessions', 1) | int }} then 'WARNING'
        else 'INFO'
    end as severity,
    b.as_of
from gaps as g
inner join bounds as b on g.id = b.id
