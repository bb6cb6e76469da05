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
{% endmacro %}
