{#- Range-based incremental maintenance (bars.md §9.3, emas.md §6, refresh.md §11).

    Every incremental model follows one recipe:
      1. pre-hook  barsmith_prepare_ranges(): compares the model's input with the fingerprint of
         its last run and writes the temp table pg_temp.<model>__ranges(id, part, from_ts, mode,
         signature, and the input's fingerprint of the id): the (id, part) pairs to recompute
         and the instant from which on.
           mode 'rebuild': new id/part, rows inserted or deleted at or before the last seen
                           instant, a changed signature (time zone, timeframe definition) or
                           var('rebuild_ids'); from_ts = -infinity.
           mode 'range'  : a row at or before the last seen instant changed (or the lookback
                           window re-reads it); from_ts = earliest such instant.
           mode 'append' : only rows after the last seen instant are new.
         On a full build every (id, part) of the input is listed with mode 'rebuild'.
      2. the model SQL recomputes the listed ranges only (see each model);
      3. strategy replace_ranges: deletes the target rows of each range and inserts the new rows;
      4. post-hook barsmith_record_fingerprints(): stores the fingerprint of the listed pairs, as
         step 1 read it (one pass over the input per run; a row committed by another session
         after step 1 is not in it, so the next run picks that row up instead of losing it).
    All four steps run in the model's single transaction. -#}

{% macro ranges_relation() -%}
    pg_temp.{{ this.identifier }}__ranges
{%- endmacro %}

{#- input_sql: select returning (id, ts, changed_at) for the rows the model reads.
    parts_sql: select returning (part, signature); default one part ''. -#}
{#- range_as_rebuild: treat 'range' like 'rebuild' (models that replay a whole id, e.g. EMAs);
    whole_ids: every listed id is rebuilt whole (models whose rows all depend on the id's history). -#}
{% macro barsmith_prepare_ranges(model_key, input_sql, parts_sql=none, lookback_days=0, range_as_rebuild=false, whole_ids=false) %}
    {%- set parts = parts_sql or "select ''::text as part, 'v1'::text as signature" -%}
    -- JIT compiles the large plans of these models for seconds while small runs execute in
    -- milliseconds (and full builds gain nothing measurable): off for the model's transaction.
    set local jit = off;
    -- memory for the window sorts and the index builds of a full build (transaction-local)
    set local work_mem = {{ sql_string(var('build_work_mem', '128MB')) }};
    set local maintenance_work_mem = {{ sql_string(var('build_maintenance_work_mem', '512MB')) }};
    {% if not is_incremental() %}
        delete from {{ fingerprint_table() }} where model = {{ sql_string(model_key) }};
    {% endif %}
    drop table if exists {{ ranges_relation() }};
    create temp table {{ this.identifier }}__ranges as
    with input_rows as (
        {{ input_sql }}
    ),

    parts as (
        {{ parts }}
    ),

    fingerprints as (
        select * from {{ fingerprint_table() }}
        where model = {{ sql_string(model_key) }} and {{ asset_filter('id') }}
    ),

    -- (a full build deleted the model's fingerprints above: no seen states, so the one pass
    -- below only yields each id's fingerprint)
    seen_states as (
        select distinct
            f.id,
            f.max_ts,
            f.max_changed_at
        from fingerprints as f
        where f.part in (select p.part from parts as p)
    ),

    input_vs_seen as (
        -- the one pass over the input: per id (and seen state of the id, normally one) the
        -- id's fingerprint and what changed since that state
        select
            r.id,
            s.max_ts as seen_ts,
            s.max_changed_at as seen_changed_at,
            count(*) as n_rows,
            sum(extract(epoch from r.ts)) as sum_epoch,
            min(r.ts) as min_ts,
            max(r.ts) as max_ts,
            max(r.changed_at) as max_changed_at,
            count(*) filter (where r.ts <= s.max_ts) as n_old,
            coalesce(sum(extract(epoch from r.ts)) filter (where r.ts <= s.max_ts), 0) as sum_old,
            min(r.ts) filter (
                where r.ts > s.max_ts or r.changed_at > s.max_changed_at
            ) as changed_from
        from input_rows as r
        left join seen_states as s on r.id = s.id
        group by r.id, s.max_ts, s.max_changed_at
    ),

    input_ids as (
        -- each input id with its fingerprint (equal in every seen-state group of the id)
        select distinct on (id)
            id,
            n_rows,
            sum_epoch,
            min_ts,
            max_ts,
            max_changed_at
        from input_vs_seen
        order by id
    ),

    wanted as (
        select
            input_ids.id,
            parts.part,
            parts.signature
        from input_ids cross join parts
    ),

    {% if is_incremental() %}
        classified as (
            select
                w.id,
                w.part,
                w.signature,
                case
                    when f.id is null
                        or f.signature <> w.signature
                        or v.n_old <> f.n_rows
                        or v.sum_old <> f.sum_epoch
                        or w.id = any({{ rebuild_ids_array() }})
                        then '-infinity'::timestamptz
                    {% if lookback_days | int > 0 %}
                        else least(v.changed_from, f.max_ts - interval '{{ lookback_days | int }} days' + interval '1 microsecond')
                    {% else %}
                        else v.changed_from
                    {% endif %}
                end as from_ts,
                f.max_ts as seen_max_ts
            from wanted as w
            left join fingerprints as f on w.id = f.id and w.part = f.part
            left join input_vs_seen as v
                on f.id = v.id and f.max_ts = v.seen_ts and f.max_changed_at = v.seen_changed_at
        ),

        vanished as (
            -- (id, part) pairs seen before that the input no longer has: delete their rows
            select
                f.id,
                f.part,
                f.signature,
                '-infinity'::timestamptz as from_ts,
                null::timestamptz as seen_max_ts
            from fingerprints as f
            where
                not exists (select 1 from input_ids as i where i.id = f.id)
                and (f.part in (select p.part from parts as p) or f.part = '')
        ),

        ranges as (
            select * from classified where from_ts is not null
            union all
            select * from vanished
        )
    {% else %}
        ranges as (
            select
                id,
                part,
                signature,
                '-infinity'::timestamptz as from_ts,
                null::timestamptz as seen_max_ts
            from wanted
        )
    {% endif %}

    select
        g.id,
        g.part,
        g.signature,
        case
            when {{ 'true' if whole_ids else 'false' }} then '-infinity'::timestamptz
            when {{ 'true' if range_as_rebuild else 'false' }} and g.from_ts <= g.seen_max_ts
                then '-infinity'::timestamptz
            else g.from_ts
        end as from_ts,
        case
            when g.from_ts = '-infinity'::timestamptz or {{ 'true' if whole_ids else 'false' }} then 'rebuild'
            when g.from_ts > g.seen_max_ts then 'append'
            when {{ 'true' if range_as_rebuild else 'false' }} then 'rebuild'
            else 'range'
        end as mode,
        i.n_rows,
        i.sum_epoch,
        i.min_ts,
        i.max_ts,
        i.max_changed_at
    from ranges as g
    left join input_ids as i on g.id = i.id;

    create index on {{ ranges_relation() }} (id, part);
    analyze {{ ranges_relation() }};
{% endmacro %}

{% macro barsmith_record_fingerprints(model_key) %}
    delete from {{ fingerprint_table() }} as f
    using {{ ranges_relation() }} as r
    where f.model = {{ sql_string(model_key) }} and f.id = r.id and f.part = r.part;

    insert into {{ fingerprint_table() }} (
        model, id, part, n_rows, sum_epoch, min_ts, max_ts, max_changed_at, signature
    )
    select
        {{ sql_string(model_key) }},
        id,
        part,
        n_rows,
        sum_epoch,
        min_ts,
        max_ts,
        max_changed_at,
        signature
    from {{ ranges_relation() }}
    -- a vanished id has no input rows and no fingerprint
    where n_rows is not null;
{% endmacro %}

{#- Custom incremental strategy: replace the listed ranges (see the header of this file).
    Model config:
      range_column      the instant column of the target (e.g. '"timestamp"', 'time_close', 'ts')
      range_part_match  SQL matching a target row t to a range row r on `part`
                        (e.g. 't.tf = r.part'); omit for per-id models.
    Recomputed rows may start before from_ts (the start of the affected bar): the second delete
    clears every target row at or after the first recomputed row of each (id, part). -#}
{% macro get_incremental_replace_ranges_sql(arg_dict) %}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set new_rows = arg_dict['temp_relation'] -%}
    {%- set columns = arg_dict['dest_columns'] | map(attribute='quoted') | join(', ') -%}
    {%- set range_column = config.get('range_column') -%}
    {%- set part_match = config.get('range_part_match') -%}
    {%- set part_columns = config.get('range_part_columns', []) -%}
    {% if part_columns | length > 0 %}
        -- statistics of the new rows' keys, so the second delete below probes the target's index
        -- per (id, part) (unanalyzed, a few thousand new rows looked like 200 groups and the
        -- target was scanned); only the key columns: a whole-row analyze of the 30k new rows of
        -- ema-sized runs cost up to 0.8 s
        analyze {{ new_rows }} (id, {{ part_columns | join(', ') }}, {{ range_column }});
    {% endif %}
    -- an 'append' range has no target rows at or after from_ts (they all derive from input rows
    -- at or before the last seen instant): only the other modes need this delete
    delete from {{ target }} as t
    using {{ ranges_relation() }} as r
    where t.id = r.id
        and r.mode <> 'append'
        {% if part_match %}and {{ part_match }}{% endif %}
        and t.{{ range_column }} >= r.from_ts;

    {% if part_columns | length > 0 %}
        -- one probe of the target's unique index per (id, part) of the new rows: a hash or merge
        -- join would read the whole target instead. The planner chose one (14.4M rows scanned,
        -- 8.8 s, for a one-day run that deleted nothing) once the estimates drifted, so it gets
        -- no choice here. (The delete above keeps its hash join: in an append-only run its
        -- ranges are empty, and an empty hash side ends the join before the target is read.)
        set local enable_hashjoin = off;
        set local enable_mergejoin = off;
        delete from {{ target }} as t
        using (
            select id, {{ part_columns | join(', ') }}, min({{ range_column }}) as from_ts
            from {{ new_rows }}
            group by id, {{ part_columns | join(', ') }}
        ) as n
        where t.id = n.id
            {% for c in part_columns %}and t.{{ c }} = n.{{ c }} {% endfor %}
            and t.{{ range_column }} >= n.from_ts;
        set local enable_hashjoin to default;
        set local enable_mergejoin to default;
    {% endif %}

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ new_rows }};

    {% if config.get('validation_queue', false) %}
        -- what ema_rejects validates next (macros/emas/ema_rejects.sql): the rows written, and
        -- per id not appended the instant from which its old rows were deleted
        {{ ema_enqueue_written(new_rows, range_column) }}
    {% endif %}

    {{ barsmith_audit_sql(new_rows, false) }}
{% endmacro %}
