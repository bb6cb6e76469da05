{{ config(materialized='ephemeral') }}
-- Per id: its calendar and the range of days whose sessions are expected (issue 21).
-- Start: the earlier of the seed's start_date and the id's first source row (var gaps_from, when
-- given, replaces it, but not before start_date). End: the seed's end_date, or the last complete
-- session at var gaps_as_of (default: today's UTC midnight, so every run of a day sees the same
-- sessions and the models stay incremental within it): a 24/7 day is complete after its UTC midnight, an
-- exchange session after its close (filtered in expected_sessions); var gaps_to clips it.
-- (The driver sets them as environment variables, see barsmith_gaps_setting.)
{%- set as_of = barsmith_gaps_setting('as_of') -%}
{%- set window_from = barsmith_gaps_setting('from') -%}
{%- set window_to = barsmith_gaps_setting('to') %}
with params as (
    select
        {% if as_of %}{{ sql_string(as_of) }}::timestamptz{% else %}date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'{% endif %} as as_of,
        {% if window_from %}{{ sql_string(window_from) }}::date{% else %}null::date{% endif %} as window_from,
        {% if window_to %}{{ sql_string(window_to) }}::date{% else %}null::date{% endif %} as window_to
),

observed as (
    select
        id,
        min(ld) as first_observed
    from {{ ref('stg_price_histories') }}
    where {{ asset_filter('id') }}
    group by id
),

seeded as (
    select
        id,
        calendar,
        start_date,
        end_date
    from {{ ref('assets') }}
    where {{ asset_filter('id') }}
),

ids as (
    select
        coalesce(o.id, s.id) as id,
        coalesce(s.calendar, '24/7') as calendar,
        s.id is not null as in_seed,
        case
            when p.window_from is not null then greatest(p.window_from, s.start_date)
            else least(s.start_date, o.first_observed)
        end as first_day,
        least(
            p.window_to,
            s.end_date,
            (p.as_of at time zone 'UTC')::date - case when coalesce(s.calendar, '24/7') = '24/7' then 1 else 0 end
        ) as last_day,
        p.as_of
    from observed as o
    full outer join seeded as s on o.id = s.id
    cross join params as p
)

select
    i.id,
    i.calendar,
    i.in_seed,
    i.first_day,
    i.last_day,
    i.as_of,
    i.calendar = '24/7' or coalesce(c.valid_from <= i.first_day and c.valid_to >= i.last_day, false) as is_covered
from ids as i
left join {{ source('calendars', 'trading_calendar_coverage') }} as c on i.calendar = c.calendar
where i.first_day <= i.last_day
