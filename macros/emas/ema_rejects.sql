{#- Output validation of emas.md §7.1 (OP-14): which EMA rows ema_rejects checks (the checks,
    first failing one wins, are in models/emas/ema_rejects.sql: nan, infinity, negative,
    out_of_price_bounds).

    The EMA models queue what they wrote in barsmith_ema_validation_queue, in their own
    transaction, so nothing written is ever left unchecked, even when ema_rejects runs in a
    later invocation:
      (model, id, tf, period, ts, ema)   a row an incremental run wrote, with its value
                                          (strategy replace_ranges, ema_enqueue_written);
      (model, id, null, null, ts)         an incremental run deleted the id's rows from ts on (an
                                          id rebuilt or gone): verdicts of rows that no longer
                                          exist are dropped;
      (model, null, ...)                  a full build: the whole table (ema_enqueue_full_build).
    ema_rejects takes the queue over in its pre-hook (delete ... returning: an entry is consumed
    exactly when the run that checks it commits) and checks the queued values themselves, the
    newest per row, so an incremental run reads no EMA table. Every existing row of a queued
    series was written by a queued run, and its newest queued value is its value; a violation is
    reported only after an index probe confirms that the row still holds that value. A full
    build of ema_rejects checks every row and empties the queue. -#}

{# Strategy step (replace_ranges, config validation_queue): queue the rows of a run. #}
{% macro ema_enqueue_written(new_rows, range_column) %}
    insert into {{ ema_validation_queue_table() }} (model, id, tf, period, ts, ema)
    select
        {{ sql_string(this.identifier) }},
        id,
        tf,
        period,
        {{ range_column }},
        ema
    from {{ new_rows }}
    union all
    select
        {{ sql_string(this.identifier) }},
        id,
        null,
        null,
        from_ts,
        null
    from {{ ranges_relation() }}
    where mode <> 'append';
{% endmacro %}

{# Post-hook of the EMA models (after barsmith_audit): a full build queues its whole table. #}
{% macro ema_enqueue_full_build() %}
    insert into {{ ema_validation_queue_table() }} (model, id, tf, period, ts, ema)
    select {{ sql_string(this.identifier) }}, null, null, null, '-infinity'::timestamptz, null
    where {{ barsmith_run_was_full_build() }};
{% endmacro %}

{% macro ema_rejects_queue_relation() -%}
    pg_temp.{{ this.identifier }}__queue
{%- endmacro %}

{#- Pre-hook of ema_rejects: takes the queue over into pg_temp.<model>__queue and, on an
    incremental run, drops the verdicts the queued entries replace: every verdict of a queued
    table, the verdict of a queued row, and verdicts of a queued id whose row is gone. -#}
{% macro ema_rejects_take_queue(tables) %}
    drop table if exists {{ ema_rejects_queue_relation() }};
    create temp table {{ this.identifier }}__queue as
    with taken as (
        delete from {{ ema_validation_queue_table() }}
        returning model, id, tf, period, ts, ema, queued_at
    )

    select * from taken;
    analyze {{ ema_rejects_queue_relation() }};

    {% if is_incremental() %}
        delete from {{ this }} as r
        using {{ ema_rejects_queue_relation() }} as q
        where
            r.source_table = q.model
            and (
                q.id is null
                or (
                    q.tf is not null and r.id = q.id and r.tf = q.tf and r.period = q.period
                    and r."timestamp" = q.ts
                )
                or (
                    q.tf is null and r.id = q.id and r."timestamp" >= q.ts
                    and not {{ ema_row_exists(tables, 'r', 'r."timestamp"') }}
                )
            );
    {% endif %}
{% endmacro %}

{#- True when the EMA row of `alias` (source_table, id, tf, period and the given ts) exists,
    with value `ema` when given (an index probe of the row's table). -#}
{% macro ema_row_exists(tables, alias, ts, ema=none) -%}
    case {{ alias }}.source_table
        {%- for t in tables %}
            when {{ sql_string(t) }} then exists (
                select 1 from {{ ref(t) }} as e
                where
                    e.id = {{ alias }}.id and e.tf = {{ alias }}.tf and e.period = {{ alias }}.period
                    and e.ts = {{ ts }}
                    {%- if ema %} and e.ema is not distinct from {{ ema }}{% endif %}
            )
        {%- endfor %}
    end
{%- endmacro %}

{#- The EMA rows to check: every row on a full build; else whole tables queued by a full build
    and the newest queued value of every other queued row. -#}
{% macro ema_validation_batch(tables) %}
    {%- for t in tables %}
        {%- set whole -%}
            exists (select 1 from {{ ema_rejects_queue_relation() }} as w where w.model = {{ sql_string(t) }} and w.id is null)
        {%- endset %}
        select
            {{ sql_string(t) }}::text as source_table,
            e.id::integer as id,
            e.tf,
            e.period,
            e.ts,
            e.ema
        from {{ ref(t) }} as e
        {% if is_incremental() %}
            where {{ whole }}
            union all
            (
                select distinct on (q.id, q.tf, q.period, q.ts)
                    {{ sql_string(t) }}::text as source_table,
                    q.id,
                    q.tf,
                    q.period,
                    q.ts,
                    q.ema
                from {{ ema_rejects_queue_relation() }} as q
                where q.model = {{ sql_string(t) }} and q.tf is not null and not {{ whole }}
                order by q.id, q.tf, q.period, q.ts, q.queued_at desc
            )
        {% endif %}
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{% endmacro %}
