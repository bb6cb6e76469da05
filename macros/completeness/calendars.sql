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

{#- Config of the two completeness models (barsmith_incremental, extension `gaps`): input = the
    source rows and the seeded ids without rows (int_completeness_input), every changed id recomputed whole (its gaps and months depend on its whole
    history), keyed per id. -#}
{% macro gaps_config(range_column, unique_key) %}
    {%- do ref('int_completeness_input') -%}
    {{ barsmith_config(
        input={'model': 'int_completeness_input', 'ts': 'ts', 'changed_at': 'changed_at'},
        range_mode='id',
        signature_vars=['bars_tz', 'gap_critical_days', 'gap_warning_sessions'],
        extension='gaps',
        range_column=range_column,
        unique_key=unique_key,
        table_indexes=[{'name': 'key', 'columns': unique_key, 'unique': true}],
        tags=['completeness'],
        pre_hook="{{ barsmith_calendar_tables() }}",
    ) }}
{% endmacro %}

{#- Hook `signature` of the gaps extension: what every row depends on besides the source rows:
    the run settings (as-of day, window), the bars_tz and severity thresholds (signature_vars),
    the assets seed (calendars, start and end dates) and the sessions written per calendar. A new
    as-of day rebuilds every id (the trailing gaps grow with the calendar); the runs of one day
    after the first recompute the ids whose rows changed. -#}
{% macro gaps_signature(node_config=none) -%}
    {%- set as_of = barsmith_gaps_setting('as_of') -%}
    {{ sql_string(as_of) if as_of else "to_char(now() at time zone 'UTC', 'YYYY-MM-DD')" }}
    || '|' || {{ sql_string(barsmith_gaps_setting('from') ~ '|' ~ barsmith_gaps_setting('to')) }}
    || '|' || coalesce((
        select md5(string_agg(a.id || ':' || a.calendar || ':' || coalesce(a.start_date::text, '') || ':'
                              || coalesce(a.end_date::text, ''), ',' order by a.id))
        from {{ barsmith_node_relation('assets') }} as a
    ), '')
    || '|' || coalesce((
        select string_agg(c.calendar || ':' || c.valid_from || ':' || c.valid_to, ',' order by c.calendar)
        from {{ source('calendars', 'trading_calendar_coverage') }} as c
    ), '')
{%- endmacro %}

{# The ids a completeness model computes: all, or in an incremental run the ids of its ranges. #}
{% macro gaps_ids_filter(column) -%}
    {%- if is_incremental() -%}
        {{ column }} in (select r.id from {{ barsmith_ranges() }} as r)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The first two CTEs of the completeness models: each id's session bounds and its expected
    sessions (the ids of this run). -#}
{% macro gaps_session_ctes() -%}
    bounds as (
        select * from {{ ref('asset_session_bounds') }}
        where {{ gaps_ids_filter('id') }}
    ),

    expected as (
        select * from {{ ref('expected_sessions') }}
        where {{ gaps_ids_filter('id') }}
    )
{%- endmacro %}
