{#- Tables that `driver gaps` / `driver fetch` fill from the exchange_calendars library
    (driver/calendars.py creates the same two tables). The completeness models create them
    empty when absent, so a plain `dbt build` works without the driver; a calendar used by an
    asset but never written is then caught by assert_trading_sessions_cover_assets. -#}
{% macro barsmith_calendar_tables() %}
    {#- the two models run in parallel threads: one creates, the other waits for its commit -#}
    select pg_advisory_xact_lock(hashtext('barsmith_calendar_tables'));
    create table if not exists {{ target.schema }}.trading_sessions (
        calendar text not null,
        session_date date not null,
        open_utc timestamptz not null,
        close_utc timestamptz not null,
        is_early_close boolean not null,
        primary key (calendar, session_date)
    );
    create table if not exists {{ target.schema }}.trading_calendar_coverage (
        calendar text primary key,
        valid_from date not null,
        valid_to date not null,
        library_version text,
        written_at timestamptz not null default now()
    );
{% endmacro %}

{#- A run setting of the completeness models (as_of, from, to): var gaps_<name>, else the
    environment variable BARSMITH_GAPS_<NAME> (what the driver sets: a changed env var makes dbt
    re-parse only the files that read it, a changed var the whole project), else ''. -#}
{% macro barsmith_gaps_setting(name) -%}
    {%- set env_name = 'BARSMITH_GAPS_' ~ (name | upper) -%}
    {%- set from_env = env_var(env_name, '') if env_var is defined else '' -%}
    {{ return(var('gaps_' ~ name, from_env)) }}
{%- endmacro %}
