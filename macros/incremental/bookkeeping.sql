{#- The bookkeeping tables of the barsmith_incremental materialization, in the target schema.
    They are dbt sources (models/bookkeeping/_bookkeeping.yml), so `dbt docs` shows who reads them,
    and every barsmith_incremental model names them through barsmith_bookkeeping() at parse time.

      barsmith_input_fingerprints  per model and (id, part): the fingerprint of the input rows the
                                   model last consumed (row count, sum of epoch seconds, first and
                                   last instant, newest change marker, the part's signature). The
                                   next run compares its input with it to find what changed.
      barsmith_changes             per model run: what it wrote, at the model's change grain
                                   (id; id, tf; or id, tf, period) from which instant on, or one
                                   row for a full build. Read by the data tests of the same run
                                   (tests scoped to what the run wrote) and by models that consume
                                   another model's changes (ema_rejects).
      barsmith_run_log             per dbt invocation and model: full build or not, rows written,
                                   the model's quality counts (read by the driver's summary).
    Created by on-run-start (barsmith_bootstrap), idempotent. -#}

{% macro barsmith_bookkeeping(name) -%}
    {{ return(source('barsmith', name)) }}
{%- endmacro %}

{#- Parse-time registration of the bookkeeping sources a barsmith_incremental model uses, so the
    lineage shows them (called by barsmith_config). -#}
{% macro barsmith_register_bookkeeping() %}
    {%- for name in ['barsmith_input_fingerprints', 'barsmith_changes', 'barsmith_run_log'] -%}
        {%- do source('barsmith', name) -%}
    {%- endfor -%}
{% endmacro %}

{% macro barsmith_bootstrap() %}
    {%- set schema = adapter.quote(target.schema) -%}
    create schema if not exists {{ schema }};
    create table if not exists {{ schema }}.barsmith_input_fingerprints (
        model text not null,
        id integer not null,
        part text not null,
        n_rows bigint not null,
        sum_epoch numeric not null,
        min_ts timestamptz,
        max_ts timestamptz,
        max_changed_at timestamptz,
        signature text not null,
        recorded_at timestamptz not null default now(),
        primary key (model, id, part)
    );
    create table if not exists {{ schema }}.barsmith_changes (
        seq bigint generated always as identity primary key,
        invocation_id text not null,
        model text not null,
        recorded_at timestamptz not null default clock_timestamp(),
        full_build boolean not null,
        id integer,
        tf text,
        period integer,
        from_ts timestamptz
    );
    create index if not exists barsmith_changes_model_seq on {{ schema }}.barsmith_changes (model, seq);
    create table if not exists {{ schema }}.barsmith_run_log (
        invocation_id text not null,
        model text not null,
        recorded_at timestamptz not null default clock_timestamp(),
        full_build boolean not null,
        rows_written bigint not null,
        counts jsonb not null default '{}'::jsonb,
        primary key (invocation_id, model)
    );
    delete from {{ schema }}.barsmith_run_log where recorded_at < now() - interval '90 days';
    -- replaced by barsmith_changes (2026-12); the EMA resume values are read from the EMA tables
    drop table if exists {{ schema }}.barsmith_ema_validation_queue;
    drop table if exists {{ schema }}.barsmith_ema_resume_state;
{% endmacro %}

{#- Run log row of this model run: rows written and the model's quality counts (config
    `audit_counts`: name -> boolean SQL expression over the rows written), counted over `relation`
    (the new rows of an incremental run, the whole table after a full build). -#}
{% macro barsmith_record_run(relation, full_build, extra_counts={}) %}
    {%- set counts = config.get('audit_counts', {}) or {} -%}
    insert into {{ barsmith_bookkeeping('barsmith_run_log') }} (invocation_id, model, full_build, rows_written, counts)
    select
        {{ sql_string(invocation_id) }},
        {{ sql_string(this.identifier) }},
        {{ 'true' if full_build else 'false' }},
        count(*),
        jsonb_build_object(
            {%- for name, expr in counts.items() %}
                {{ sql_string(name) }}, count(*) filter (where {{ expr }}){% if not loop.last or extra_counts %},{% endif %}
            {%- endfor %}
            {%- for name, expr in extra_counts.items() %}
                {{ sql_string(name) }}, ({{ expr }}){% if not loop.last %},{% endif %}
            {%- endfor %}
        )
    from {{ relation }}
    on conflict (invocation_id, model) do update set
        recorded_at = excluded.recorded_at,
        full_build = excluded.full_build,
        rows_written = excluded.rows_written,
        counts = excluded.counts
{% endmacro %}

{#- What this run wrote, into barsmith_changes (config `change_grain`: the key columns a change is
    recorded by, id first; the range column's minimum over the new rows is the instant it starts
    at). An incremental run records one row per grain key of its new rows and one per range it
    deleted without appending (a rebuilt or vanished id: its old rows are gone from from_ts on).
    A full build records one row with full_build = true. Entries of earlier runs are kept while a
    consumer may still need them (config `keep_changes_until_consumed`), else replaced. -#}
{% macro barsmith_record_changes(new_rows, full_build) %}
    {%- set grain = config.get('change_grain', ['id']) -%}
    {%- set range_column = config.get('range_column') -%}
    {%- set part_column = barsmith_part_column() -%}
    {%- set changes = barsmith_bookkeeping('barsmith_changes') -%}
    {% if full_build or not config.get('keep_changes_until_consumed', false) %}
        delete from {{ changes }}
        where model = {{ sql_string(this.identifier) }} and invocation_id <> {{ sql_string(invocation_id) }};
    {% endif %}
    insert into {{ changes }} (invocation_id, model, full_build, id, tf, period, from_ts)
    {% if full_build %}
        select {{ sql_string(invocation_id) }}, {{ sql_string(this.identifier) }}, true, null::integer, null::text, null::integer, null::timestamptz
    {% else %}
        select
            {{ sql_string(invocation_id) }},
            {{ sql_string(this.identifier) }},
            false,
            id,
            {{ 'tf' if 'tf' in grain else 'null::text' }},
            {{ 'period' if 'period' in grain else 'null::integer' }},
            min({{ range_column }})
        from {{ new_rows }}
        group by {{ grain | join(', ') }}
        {% if not config.get('input').get('changes_of') %}
        union all
        select
            {{ sql_string(invocation_id) }},
            {{ sql_string(this.identifier) }},
            false,
            id,
            {{ "nullif(part, '')" if part_column else 'null::text' }},
            null::integer,
            from_ts
        from {{ barsmith_ranges() }}
        where mode <> 'append'
        {% endif %}
    {% endif %}
{% endmacro %}
