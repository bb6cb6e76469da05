{#- Bookkeeping shared by every incremental model.

    barsmith_input_fingerprints remembers, per model and (id, part), what the model's input looked
    like when the model last consumed it: row count, sum of epoch seconds of the row instants,
    the latest instant and the latest change marker (load_ts / src_load_ts). Comparing the input
    of today with this fingerprint tells exactly which ids gained, lost or changed rows and from
    which instant on (bars.md §9.3, OP-15). `part` is '' for per-id models, the tf for bar
    families and 'tf:period' for EMA families. -#}

{% macro fingerprint_table() -%}
    {{ target.schema }}.barsmith_input_fingerprints
{%- endmacro %}

{% macro barsmith_bootstrap() %}
    create schema if not exists {{ target.schema }};
    create table if not exists {{ fingerprint_table() }} (
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
    alter table {{ fingerprint_table() }} add column if not exists min_ts timestamptz;
    create table if not exists {{ run_log_table() }} (
        invocation_id text not null,
        model text not null,
        recorded_at timestamptz not null default clock_timestamp(),
        full_build boolean not null,
        rows_written bigint not null,
        counts jsonb not null default '{}'::jsonb,
        primary key (invocation_id, model)
    );
    delete from {{ run_log_table() }} where recorded_at < now() - interval '90 days';

    create table if not exists {{ ema_close_counts_table() }} (
        model text not null,
        id integer not null,
        tf text not null,
        n_closes bigint not null,
        counted_through date not null,
        primary key (model, id, tf)
    );

    create table if not exists {{ ema_resume_state_table() }} (
        model text not null,
        id integer not null,
        tf text not null,
        period integer not null,
        last_ts timestamptz not null,
        l_ema double precision,
        l_d1r double precision,
        l_ema_bar double precision,
        l_d1rb double precision,
        c_ema double precision,
        c_d1 double precision,
        cb_ema_bar double precision,
        cb_d1b double precision,
        primary key (model, id, tf, period)
    );

    create table if not exists {{ ema_validation_queue_table() }} (
        model text not null,
        id integer,
        tf text,
        period integer,
        ts timestamptz not null,
        ema double precision,
        queued_at timestamptz not null default now()
    );
{% endmacro %}

{#- barsmith_run_log: rows written per model and dbt invocation, with the model's quality
    counts (config `audit_counts`: name -> boolean SQL expression), read by the driver summary
    (refresh.md §11.1: rows_affected of dbt only reflects the last statement). -#}
{# Bar closes counted per EMA model and (id, tf): see macros/emas/ema_closes.sql. #}
{% macro ema_close_counts_table() -%}
    {{ target.schema }}.barsmith_ema_close_counts
{%- endmacro %}

{# Resume values of each EMA series (its last row and last canonical rows): see
   macros/emas/ema_common.sql (ema_series_state, ema_walks, ema_keep_full_build_states). #}
{% macro ema_resume_state_table() -%}
    {{ target.schema }}.barsmith_ema_resume_state
{%- endmacro %}

{# EMA rows waiting for ema_rejects' output validation: see macros/emas/ema_rejects.sql. #}
{% macro ema_validation_queue_table() -%}
    {{ target.schema }}.barsmith_ema_validation_queue
{%- endmacro %}

{% macro run_log_table() -%}
    {{ target.schema }}.barsmith_run_log
{%- endmacro %}

{% macro barsmith_audit_sql(relation, full_build, where='true') %}
    {%- set counts = config.get('audit_counts', {}) -%}
    {%- if counts is not mapping -%}{%- set counts = {} -%}{%- endif -%}
    insert into {{ run_log_table() }} (invocation_id, model, full_build, rows_written, counts)
    select
        {{ sql_string(invocation_id) }},
        {{ sql_string(this.identifier) }},
        {{ 'true' if full_build else 'false' }},
        count(*),
        jsonb_build_object(
            {%- for name, expr in counts.items() %}
                {{ sql_string(name) }}, count(*) filter (where {{ expr }}){% if not loop.last %},{% endif %}
            {%- endfor %}
        )
    from {{ relation }}
    where ({{ where }})
    -- an uncorrelated one-time filter: when the strategy already recorded this run, the table
    -- is not scanned at all
    and not exists (
        select 1 from {{ run_log_table() }} as l
        where l.invocation_id = {{ sql_string(invocation_id) }} and l.model = {{ sql_string(this.identifier) }}
    )
    on conflict (invocation_id, model) do nothing;
{% endmacro %}

{# Post-hook of every incremental model: a full build records its whole table (the strategy
   already recorded the new rows of an incremental run, so this inserts nothing then). #}
{% macro barsmith_audit(where='true') %}
    {{ barsmith_audit_sql(this, true, where) }}
{% endmacro %}

{# SQL condition for post-hooks after barsmith_audit: this run built the model's table whole
   (the audit recorded a full build for this invocation). #}
{% macro barsmith_run_was_full_build() -%}
    exists (
        select 1 from {{ run_log_table() }}
        where invocation_id = {{ sql_string(invocation_id) }} and model = {{ sql_string(this.identifier) }} and full_build
    )
{%- endmacro %}

{# Post-hook (after barsmith_audit): refresh the planner statistics of a table that was just
   built whole, so later runs plan their index probes on real numbers; an incremental run
   leaves them to autovacuum. #}
{% macro barsmith_analyze_full_build() %}
    do $barsmith$
    begin
        if {{ barsmith_run_was_full_build() }} then
            execute {{ sql_string('analyze ' ~ this) }};
        end if;
    end
    $barsmith$;
{% endmacro %}

{# Post-hook: create index `name` on this table once: `keys` is the rest of the definition
   ("(id, tf) where ..."). The catalog is checked first (no table lock). A full refresh builds
   a new table while the one it replaces, renamed to <model>__dbt_backup, still holds the index
   name until it is dropped at the end of the run: that index is dropped first, so the new table
   gets its own. A name held by any other table is an error, not a silent skip. #}
{% macro barsmith_create_index_once(name, keys, unique=false) %}
    {%- set qualified = adapter.quote(this.schema) ~ '.' ~ adapter.quote(name) -%}
    {%- set backup = adapter.quote(this.schema) ~ '.' ~ adapter.quote(this.identifier ~ '__dbt_backup') -%}
    do $barsmith$
    declare
        owner regclass;
    begin
        select i.indrelid::regclass into owner
        from pg_index as i
        where i.indexrelid = to_regclass({{ sql_string(qualified) }});
        if owner is not null and owner <> {{ sql_string(this.render()) }}::regclass then
            if owner = to_regclass({{ sql_string(backup) }}) then
                execute {{ sql_string('drop index ' ~ qualified) }};
                owner := null;
            else
                raise exception 'index % already exists on %, not on {{ this.identifier }}',
                    {{ sql_string(name) }}, owner;
            end if;
        end if;
        if owner is null then
            execute {{ sql_string('create ' ~ ('unique ' if unique else '') ~ 'index ' ~ adapter.quote(name) ~ ' on ' ~ this.render() ~ ' ' ~ keys) }};
        end if;
    end
    $barsmith$;
{% endmacro %}
