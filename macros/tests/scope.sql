{#- What a data test reads (refresh.md §11, issue: tests scoped to what a run wrote).

    Under `dbt build` (or with var test_scope: latest) a test of a barsmith_incremental model checks
    the rows that model's latest run wrote (in a build: this run), as the run recorded them in
    barsmith_changes (per change-grain key from an instant on, or a whole table after a full build),
    plus the rows around them an invariant must see (`context`). Under `dbt test` (the full audit:
    `driver validate`), or with var test_scope: all, every test reads whole tables.
      context 'rows'      the rows written
      context 'previous'  also the row before the first one written, per key (lags)
      context 'previous:N' also the N rows before it (all rows before when the key has fewer)
      context 'bars'      also the rest of every bar they belong to and the last row of the bar
                          before (bar-level invariants of the snapshot families)
    barsmith_scoped() returns a subquery of the model's rows with a boolean column
    barsmith_checked: a test reports violations only on checked rows (or bars holding one); the
    other rows are context. Views (derived from tested tables) are checked only by the full audit;
    seeds and plain tables (rebuilt whole by every run) are always checked whole. -#}

{% macro barsmith_test_mode(model) %}
    {%- set scope = var('test_scope', 'auto') -%}
    {%- if scope not in ('auto', 'latest', 'all') -%}
        {{ exceptions.raise_compiler_error("var test_scope must be auto, latest or all, not " ~ scope) }}
    {%- endif -%}
    {#- (on Citus every test reads whole tables, pushed down to the shards: the scope's join of the
        reference table barsmith_changes with a model cannot be pushed down in every test's shape) -#}
    {%- if scope == 'all' or (scope == 'auto' and flags.WHICH != 'build') or var('barsmith_engine', 'postgres') == 'citus' -%}
        {{ return('all') }}
    {%- endif -%}
    {%- set node = barsmith_node_of(model) -%}
    {%- if node is none or node.resource_type == 'seed' or node.config.materialized == 'table' -%}
        {{ return('all') }}
    {%- elif node.resource_type == 'source' -%}
        {{ return('source') }}
    {%- elif node.config.materialized == 'barsmith_incremental' -%}
        {{ return('changes') }}
    {%- else -%}
        {{ return('none') }}
    {%- endif -%}
{% endmacro %}

{# The graph node (model, seed or source) whose relation a test reads, or none. #}
{% macro barsmith_node_of(model) %}
    {%- if model.identifier is not defined -%}{{ return(none) }}{%- endif -%}
    {%- for node in graph.nodes.values() if node.resource_type in ('model', 'seed') and node.alias == model.identifier -%}
        {{ return(node) }}
    {%- endfor -%}
    {%- for node in graph.sources.values() if node.identifier == model.identifier -%}
        {{ return(node) }}
    {%- endfor -%}
    {{ return(none) }}
{% endmacro %}

{% macro barsmith_scoped(model, context='rows') %}
    {%- set mode = barsmith_test_mode(model) if execute else 'all' -%}
    {%- if mode == 'all' -%}
        (select t.*, true as barsmith_checked from {{ model }} as t)
    {%- elif mode == 'none' -%}
        (select t.*, true as barsmith_checked from {{ model }} as t where false)
    {%- elif mode == 'source' -%}
        {{ barsmith_scoped_source(model) }}
    {%- else -%}
        {%- set node = barsmith_node_of(model) -%}
        {%- set grain = node.config.get('change_grain') or ['id'] -%}
        {%- set rc = node.config.get('range_column') -%}
        {%- set key_match -%}
            t.id = k.id{% for c in grain[1:] %} and t.{{ c }} = k.{{ c }}{% endfor %}
        {%- endset -%}
        {%- set changes -%}
            {{ barsmith_latest_changes([node.name]) }}
        {%- endset -%}
        (
            select t.*, true as barsmith_checked
            from {{ model }} as t
            where exists (select 1 from ({{ changes }}) as c where c.full_build)
            union all
            select t.*, t.{{ rc }} >= k.from_ts as barsmith_checked
            from (
                select {{ grain | join(', ') }}, min(from_ts) as from_ts
                from ({{ changes }}) as c
                where not c.full_build{% for c in grain[1:] %} and c.{{ c }} is not null{% endfor %}
                group by {{ grain | join(', ') }}
            ) as k
            cross join lateral (
                select t.*
                from {{ model }} as t
                where {{ key_match }} and t.{{ rc }} >= {{ barsmith_scope_start(model, context, key_match, rc) }}
                -- (a fence: one index probe per changed key; pulled up into a join, the planner
                -- may hash the whole table when it expects many rows per key)
                offset 0
            ) as t
            where not exists (select 1 from ({{ changes }}) as c where c.full_build)
        )
    {%- endif -%}
{% endmacro %}

{#- The first instant of a key's context (the key's change starts at k.from_ts). -#}
{% macro barsmith_scope_start(model, context, key_match, rc) -%}
    {%- if context == 'previous' -%}
        coalesce((
            select t.{{ rc }} from {{ model }} as t
            where {{ key_match }} and t.{{ rc }} < k.from_ts
            order by t.{{ rc }} desc
            limit 1
        ), k.from_ts)
    {%- elif context.startswith('previous:') -%}
        {#- the N rows before (all of them when the key has fewer) -#}
        coalesce((
            select t.{{ rc }} from {{ model }} as t
            where {{ key_match }} and t.{{ rc }} < k.from_ts
            order by t.{{ rc }} desc
            offset {{ (context.split(':')[1] | int) - 1 }}
            limit 1
        ), '-infinity')
    {%- elif context == 'bars' -%}
        coalesce((
            select t.time_open - interval '1 millisecond' from {{ model }} as t
            where {{ key_match }} and t.{{ rc }} < k.from_ts
            order by t.{{ rc }} desc
            limit 1
        ), k.from_ts)
    {%- else -%}
        k.from_ts
    {%- endif -%}
{%- endmacro %}

{#- Source rows a scoped build checks: the rows the 1D models have not consumed yet (loaded or
    changed after their fingerprint, or of an id they never saw), and every other row of the
    same id and local day (a duplicate local day needs both rows). -#}
{% macro barsmith_scoped_source(model) %}
    {%- set fingerprints = source('barsmith', 'barsmith_input_fingerprints') -%}
    (
        with fresh as (
            select s.id, {{ local_day('s."timestamp"') }} as ld
            from {{ model }} as s
            left join {{ fingerprints }} as f on f.model = 'price_bars_1d' and f.part = '' and s.id = f.id
            where f.id is null or s.load_ts > f.max_changed_at or s."timestamp" > f.max_ts
        )

        select s.*, true as barsmith_checked
        from {{ model }} as s
        where exists (
            select 1 from fresh where fresh.id = s.id and fresh.ld = {{ local_day('s."timestamp"') }}
        )
    )
{% endmacro %}

{#- A predicate over rows of alias `alias` (with id and `ts_column`): true for the rows at or after
    the first instant any of `models` wrote for the id in its latest run (all rows in the full
    audit or after a full build of one of them). For tests that check another relation than the
    one written (e.g. the source rows the 1D models processed). -#}
{% macro barsmith_changed_since_scope(alias, models, ts_column) -%}
    {%- if execute and barsmith_test_mode(ref(models[0])) == 'changes' -%}
        {%- set changes -%}
            {{ barsmith_latest_changes(models) }}
        {%- endset -%}
        (
            exists (select 1 from ({{ changes }}) as c where c.full_build)
            or exists (
                select 1 from ({{ changes }}) as c
                where not c.full_build and c.id = {{ alias }}.id and {{ alias }}.{{ ts_column }} >= c.from_ts
            )
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- The barsmith_changes rows of the latest run of each of `models`. The latest invocation of a
    model is read once per model by the (model, seq) index (ordered by both columns: ordered by seq
    alone, the planner may walk the primary key backwards through every later model's rows, once
    per change row). -#}
{% macro barsmith_latest_changes(models) -%}
    {%- set changes = source('barsmith', 'barsmith_changes') -%}
    select c.*
    from (
        values {% for m in models %}({{ sql_string(m) }}){% if not loop.last %}, {% endif %}{% endfor %}
    ) as m (model)
    cross join lateral (
        select l.invocation_id from {{ changes }} as l
        where l.model = m.model
        order by l.model desc, l.seq desc
        limit 1
    ) as latest
    inner join {{ changes }} as c on c.model = m.model and c.invocation_id = latest.invocation_id
{%- endmacro %}
