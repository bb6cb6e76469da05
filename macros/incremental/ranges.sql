{#- What changed since a model's last run (bars.md §9.3, emas.md §6, refresh.md §11): the first
    step of the barsmith_incremental materialization.

    The model's input (config `input`: a model with an id, an instant `ts` and a change marker
    `changed_at` per row) is compared, per id, with the fingerprint the model recorded when it last
    consumed it (barsmith_input_fingerprints: row count, sum of epoch seconds, first and last
    instant, newest change marker). The result is the temp table barsmith_ranges():
    (id, part, signature, from_ts, mode, and the id's input fingerprint), one row per (id, part)
    to recompute:
      mode 'rebuild'  new id or part, rows inserted or deleted at or before the last seen instant,
                      a changed signature (time zone, timeframe definition, periods, ...) or
                      var('rebuild_ids'): from_ts = -infinity;
      mode 'range'    a row at or before the last seen instant changed (or the lookback window
                      re-reads it): from_ts = the earliest such instant;
      mode 'append'   only rows after the last seen instant are new.
    A full build lists every (id, part) of the input as 'rebuild'.
    Parts (config `parts`): 'timeframe' = one part per timeframe of the model's family (config
    `timeframes`), else one part '' per id. Each part is signed with everything its rows depend on
    besides the rows (config `signature_vars`, the timeframe row, and an extension's signature).
    Readiness (config `waits_for`): an id whose upstream model has not yet consumed the id's
    current input (for the parts this model reads) waits: it is left out of the ranges, its rows
    and fingerprint stay as they are, and a later run picks it up once the upstream caught up.
    Freshness gate (config `defer_stale_ids`, incremental runs): an id whose newest input instant
    is older than var staleness_hours waits likewise, unless var skip_stale_check.
    range_mode (config): 'series': any change at or before the last seen instant rebuilds the id
    (models that replay each series from its start); 'id': any change rebuilds the id (models
    whose rows all depend on the id's whole history, e.g. the gap models). -#}

{% macro barsmith_ranges() -%}
    {{ barsmith_work_relation('ranges') }}
{%- endmacro %}

{% macro barsmith_waiting() -%}
    {{ barsmith_work_relation('waiting') }}
{%- endmacro %}

{# The target column that holds the part (the timeframe), or none for models with one part per id. #}
{% macro barsmith_part_column(node_config=none) -%}
    {%- set cfg = node_config or config -%}
    {{ return('tf' if cfg.get('parts') == 'timeframe' else none) }}
{%- endmacro %}

{#- (id, ts, changed_at) of the rows of an input spec {'model', 'ts', 'changed_at'[, 'where']}, or
    what the model's extension gives through its hook `input_rows` (an input whose change marker is
    computed, e.g. the 1D models'). upstream: the spec is another model's input (read through the
    graph, not a ref of this model); node_config: that model's config. -#}
{% macro barsmith_input_rows(spec, upstream=false, node_config=none) -%}
    {%- set hooked = barsmith_extension_call('input_rows', node_config=node_config or config) -%}
    {%- if hooked -%}
        {{ return(hooked) }}
    {%- endif -%}
    select
        id,
        {{ adapter.quote(spec['ts']) }} as ts,
        {{ adapter.quote(spec['changed_at']) }} as changed_at
    from {{ barsmith_node_relation(spec['model']) if upstream else ref(spec['model']) }}
    where {{ asset_filter('id') }}{% if spec.get('where') %} and ({{ spec['where'] }}){% endif %}
{%- endmacro %}

{#- The timeframes of a model (its config `timeframes`: family, and scheme for the calendar
    families), filtered by var('timeframes'): a select of dim_timeframe rows. -#}
{% macro barsmith_timeframes(node_config=none, columns='*') -%}
    {%- set cfg = node_config or config -%}
    {%- set tfs = cfg.get('timeframes') if cfg.get is defined else none -%}
    {#- (at parse time the config is not resolved yet: no timeframes) -#}
    {%- if tfs is not mapping -%}{%- set tfs = {'family': []} -%}{%- endif -%}
    {%- set families = tfs['family'] if tfs['family'] is not string else [tfs['family']] -%}
    select {{ columns }}
    from {{ ref('dim_timeframe') }}
    where
        family in ({% for f in families %}{{ sql_string(f) }}, {% endfor %}null)
        {% if tfs.get('scheme') %}and coalesce(calendar_scheme, {{ sql_string(tfs['scheme']) }}) = {{ sql_string(tfs['scheme']) }}{% endif %}
        and {{ timeframe_filter('tf') }}
{%- endmacro %}

{#- The (part, signature) rows of a model: what its rows depend on besides its input rows. -#}
{% macro barsmith_parts(node_config=none) -%}
    {%- set cfg = node_config or config -%}
    {%- set sig_values = [] -%}
    {%- for name in cfg.get('signature_vars', []) -%}{%- do sig_values.append(var(name) | string) -%}{%- endfor -%}
    {%- set vars_sig = sig_values | join('|') -%}
    {%- set extension_sig = barsmith_extension_call('signature', node_config=cfg) -%}
    {%- if cfg.get('parts') == 'timeframe' -%}
        select
            tf as part,
            md5({{ sql_string(vars_sig) }} || '|' || base_unit || '|' || tf_qty || '|' || tf_days_nominal) as signature
        from ({{ barsmith_timeframes(cfg) }}) as timeframes
    {%- elif extension_sig -%}
        select ''::text as part, md5({{ extension_sig }}) as signature
    {%- elif vars_sig or cfg.get('signature_vars', []) | length > 0 -%}
        select ''::text as part, md5({{ sql_string(vars_sig) }}) as signature
    {%- else -%}
        select ''::text as part, 'v1'::text as signature
    {%- endif -%}
{%- endmacro %}

{#- Per id of an input: its fingerprint now (one pass over the input). -#}
{% macro barsmith_input_fingerprint(input_sql) -%}
    select
        id,
        count(*) as n_rows,
        sum(extract(epoch from ts)) as sum_epoch,
        min(ts) as min_ts,
        max(ts) as max_ts,
        max(changed_at) as max_changed_at
    from ({{ input_sql }}) as input_rows
    group by id
{%- endmacro %}

{% macro barsmith_prepare_ranges(full) %}
    {%- set model_key = sql_string(this.identifier) -%}
    {%- set input = config.get('input') -%}
    {%- if input.get('changes_of') -%}
        {{ return(barsmith_take_changes(input['changes_of'], full)) }}
    {%- endif -%}
    {%- set lookback_days = config.get('lookback_days', 0) | int -%}
    {%- set series_mode = config.get('range_mode', 'range') == 'series' -%}
    {%- set id_mode = config.get('range_mode', 'range') == 'id' -%}
    {%- set fingerprints_table = barsmith_bookkeeping('barsmith_input_fingerprints') -%}
    {% if full %}
        delete from {{ fingerprints_table }} where model = {{ model_key }};
    {% endif %}
    {% call barsmith_work_table('ranges') %}
    with input_rows as (
        {{ barsmith_input_rows(input) }}
    ),

    parts as (
        {{ barsmith_parts() }}
    ),

    fingerprints as (
        select * from {{ fingerprints_table }}
        where model = {{ model_key }} and {{ asset_filter('id') }}
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

    {% if not full %}
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
                    {% if lookback_days > 0 %}
                        else least(v.changed_from, f.max_ts - interval '{{ lookback_days }} days' + interval '1 microsecond')
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
            when {{ 'true' if id_mode else 'false' }} then '-infinity'::timestamptz
            when {{ 'true' if series_mode else 'false' }} and g.from_ts <= g.seen_max_ts then '-infinity'::timestamptz
            else g.from_ts
        end as from_ts,
        case
            when g.from_ts = '-infinity'::timestamptz or {{ 'true' if id_mode else 'false' }} then 'rebuild'
            when g.from_ts > g.seen_max_ts then 'append'
            when {{ 'true' if series_mode else 'false' }} then 'rebuild'
            else 'range'
        end as mode,
        i.n_rows,
        i.sum_epoch,
        i.min_ts,
        i.max_ts,
        i.max_changed_at
    from ranges as g
    left join input_ids as i on g.id = i.id
    {% endcall %}

    {{ barsmith_set_aside_waiting_ids(full) }}

    create index on {{ barsmith_ranges() }} (id, part);
    analyze {{ barsmith_ranges() }};
{% endmacro %}

{#- Readiness (config `waits_for`): ids whose upstream model has not consumed their current input
    move from the ranges to barsmith_waiting(). An upstream reads the same input as this model (or
    its own, fingerprinted here too); it is ready for an id when its recorded fingerprint of every
    part this model needs equals the input's fingerprint now, under the part's current signature.
    A full build keeps the waiting ids in its ranges (it builds every id) but does not record their
    fingerprints, so the next run rebuilds them. -#}
{% macro barsmith_set_aside_waiting_ids(full) %}
    {%- set upstreams = config.get('waits_for', []) -%}
    {{ barsmith_work_table('waiting', columns='id integer primary key, reason text not null') }}
    {% for upstream in upstreams %}
        {%- set node = barsmith_node_config(upstream) -%}
        {%- set tf_column = barsmith_part_column(node) -%}
        insert into {{ barsmith_waiting() }} (id, reason)
        with upstream_input as (
            {% if node.get('input') == config.get('input') %}
                select distinct id, n_rows, sum_epoch, min_ts, max_ts, max_changed_at
                from {{ barsmith_ranges() }}
                where n_rows is not null
            {% else %}
                {{ barsmith_input_fingerprint(barsmith_input_rows(node.get('input'), upstream=true, node_config=node)) }}
            {% endif %}
        ),

        upstream_parts as (
            select p.part, p.signature
            from ({{ barsmith_parts(node) }}) as p
            {% if tf_column and barsmith_part_column() %}
                -- the upstream's timeframes this model reads
                where p.part in (select r.part from {{ barsmith_ranges() }} as r)
            {% elif tf_column %}
                where p.part in (select x.tf from ({{ barsmith_timeframes() }}) as x)
            {% endif %}
        )

        select distinct
            r.id,
            'upstream'
        from (select distinct id from {{ barsmith_ranges() }}) as r
        cross join upstream_parts as p
        left join upstream_input as i on r.id = i.id
        left join {{ barsmith_bookkeeping('barsmith_input_fingerprints') }} as f
            on f.model = {{ sql_string(upstream) }} and f.id = r.id and f.part = p.part
        where
            not (
                i.id is not null
                and f.id is not null
                and f.signature = p.signature
                and f.n_rows = i.n_rows
                and f.sum_epoch = i.sum_epoch
                and f.max_ts is not distinct from i.max_ts
                and f.min_ts is not distinct from i.min_ts
                and f.max_changed_at is not distinct from i.max_changed_at
            )
            -- an id the input no longer has is removed whatever the upstream did
            and exists (select 1 from {{ barsmith_ranges() }} as x where x.id = r.id and x.n_rows is not null)
        on conflict (id) do nothing;
    {% endfor %}
    {% if config.get('defer_stale_ids') and not full and not var('skip_stale_check', false) %}
        -- the freshness gate (refresh.md §6): an id whose newest input instant is older than
        -- var staleness_hours waits (var skip_stale_check: true computes it anyway)
        insert into {{ barsmith_waiting() }} (id, reason)
        select distinct
            id,
            'stale'
        from {{ barsmith_ranges() }}
        where max_ts < now() - interval '1 hour' * {{ var('staleness_hours', 48) | float }}
        on conflict (id) do nothing;
    {% endif %}
    {% if not full %}
        delete from {{ barsmith_ranges() }} as r
        using {{ barsmith_waiting() }} as w
        where r.id = w.id;
    {% endif %}
{% endmacro %}

{#- The fingerprints of the ranges consumed, as the prepare step read them (one pass over the
    input per run; a row committed by another session after that step is not in them, so the
    next run picks it up). Ids that waited for an upstream keep their old fingerprint. A run that
    computed a subset of the series of its parts (config `partial_when`: vars that restrict it)
    records nothing, so the next unrestricted run catches the other series up. -#}
{% macro barsmith_record_fingerprints() %}
    {%- if config.get('input').get('changes_of') -%}{{ return('') }}{%- endif -%}
    {%- set partial = namespace(value=false) -%}
    {%- for name in config.get('partial_when', []) -%}
        {%- if list_var(name) | length > 0 -%}{%- set partial.value = true -%}{%- endif -%}
    {%- endfor -%}
    {%- set fingerprints_table = barsmith_bookkeeping('barsmith_input_fingerprints') -%}
    {% if not partial.value %}
        delete from {{ fingerprints_table }} as f
        using {{ barsmith_ranges() }} as r
        where f.model = {{ sql_string(this.identifier) }} and f.id = r.id and f.part = r.part;

        insert into {{ fingerprints_table }} (
            model, id, part, n_rows, sum_epoch, min_ts, max_ts, max_changed_at, signature
        )
        select
            {{ sql_string(this.identifier) }},
            r.id,
            r.part,
            r.n_rows,
            r.sum_epoch,
            r.min_ts,
            r.max_ts,
            r.max_changed_at,
            r.signature
        from {{ barsmith_ranges() }} as r
        -- a vanished id has no input rows and no fingerprint
        where r.n_rows is not null and r.id not in (select w.id from {{ barsmith_waiting() }} as w)
    {% endif %}
{% endmacro %}

{#- Ranges of a model whose input is what other models wrote (config input {'changes_of': [models]}):
    their barsmith_changes rows are taken over (deleted in this transaction, so they are consumed
    exactly when this run commits) into barsmith_ranges(): (model, full_build, id, tf, period,
    from_ts). A full build of this model takes them all and recomputes everything. -#}
{% macro barsmith_take_changes(models, full) %}
    {%- if var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ barsmith_dispatch('barsmith_take_changes')(models, full) }}
    {%- else %}
    drop table if exists {{ barsmith_ranges() }};
    create temp table {{ adapter.quote(this.identifier ~ '__ranges') }} on commit drop as
    with taken as (
        delete from {{ barsmith_bookkeeping('barsmith_changes') }}
        where model in ({% for m in models %}{{ sql_string(m) }}{% if not loop.last %}, {% endif %}{% endfor %})
        returning model, full_build, id, tf, period, from_ts
    )

    select * from taken;
    create index on {{ barsmith_ranges() }} (model, id, tf, period);
    analyze {{ barsmith_ranges() }};
    {{ barsmith_work_table('waiting', columns='id integer primary key, reason text not null') }}
    {%- endif %}
{% endmacro %}
