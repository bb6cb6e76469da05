{#- barsmith_1d_reject_log: per dbt invocation and reject reason, how many rows price_bars_1d_rejects
    (re)wrote and the first 20 of them (id, local day), for the driver's run summary
    (driver/report.py). Post-hook of price_bars_1d_rejects, after the rows are written: the rows
    this transaction inserted are the ones whose xmin is its own transaction id (a full build
    writes all of them; an incremental run writes the rows of its ranges, so a reject inside the
    lookback window is listed again by every run that re-reads it). Entries older than 90 days
    are deleted. -#}
{% macro price_bars_1d_reject_log_table() -%}
    {{ target.schema }}.barsmith_1d_reject_log
{%- endmacro %}

{% macro price_bars_1d_log_rejects() %}
    create table if not exists {{ price_bars_1d_reject_log_table() }} (
        invocation_id text not null,
        reason text not null,
        recorded_at timestamptz not null default clock_timestamp(),
        n_rows bigint not null,
        examples jsonb not null,
        primary key (invocation_id, reason)
    );
    delete from {{ price_bars_1d_reject_log_table() }} where recorded_at < now() - interval '90 days';
    insert into {{ price_bars_1d_reject_log_table() }} (invocation_id, reason, n_rows, examples)
    select
        {{ sql_string(invocation_id) }},
        reason,
        count(*),
        coalesce(
            jsonb_agg(jsonb_build_array(id, local_day::text) order by id, "timestamp") filter (where n <= 20),
            '[]'::jsonb
        )
    from (
        select
            id,
            "timestamp",
            reason,
            {{ local_day('"timestamp"') }} as local_day,
            row_number() over (partition by reason order by id, "timestamp") as n
        from {{ this }}
        where xmin = pg_current_xact_id()::xid
    ) as written
    group by reason
    on conflict (invocation_id, reason) do update
    set n_rows = excluded.n_rows, examples = excluded.examples, recorded_at = excluded.recorded_at;
{% endmacro %}
