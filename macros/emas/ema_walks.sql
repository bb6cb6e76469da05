{#- The walks shared by the six EMA models (emas.md): the spine, each series' resume state, the
    arrays a walk reads and the walk itself (ema_walk, macros/emas/ema_operator.sql). -#}

{#- Validated daily spine (OP-12): one row per id and UTC day of time_close. clip: from
    ema_start_date on (multi_tf, cal, cal_anchor; OP-22); v2 reads the whole history (§3.1), and
    its pos counts from the id's first daily bar. -#}
{% macro ema_spine_rows(with_pos=false, clip=true) -%}
    select
        b.id,
        (b.time_close at time zone 'UTC')::date as day,
        b.time_close as ts,
        b.close as x
        {%- if with_pos %},
            (row_number() over (partition by b.id order by b.time_close) - 1)::integer as pos
        {%- endif %}
    from {{ ref('price_bars_1d') }} as b
    where
        not b.is_partial_end
        and {{ asset_filter('b.id') }}
        {% if clip %}
            and b.time_close >= {{ ema_start_ts() }}
        {% endif %}
        {% if is_incremental() %}
            and b.id in (select r.id from {{ barsmith_ranges() }} as r)
        {% endif %}
{%- endmacro %}

{#- The newest target row t of series `s` (an alias with id, tf, period) that passes `where`,
    with the given columns of t: one backward step through the (id, tf, period, ts) indexes. -#}
{% macro ema_last_target_row(s, columns, where) %}
    select
        {% for c in columns %}t.{{ c }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ this }} as t
    where t.id = {{ s }}.id and t.tf = {{ s }}.tf and t.period = {{ s }}.period and {{ where }}
    order by t.ts desc
    limit 1
{% endmacro %}

{#- Resume state per series, read from the target itself (emas.md OP-15: no state kept
    elsewhere): for an id in 'append' or 'range' mode each series continues after its last stored
    row before the range's first changed instant (every value before that instant depends only on
    inputs before it: the closes and spine rows a correction at that instant leaves alone); a
    series without such a row, and every series of an id to rebuild, starts from scratch. Two
    index probes per series: its last row and its last canonical row before that instant (roll =
    false; in the dual families roll_bar = roll, so the same row holds the last canonical ema_bar).
    kind: 'preview' (multi_tf: E = E* = last canonical ema), 'daily' (v2: e = last ema),
    'dual' (cal, cal_anchor: E = last canonical ema_bar).
    On Citus the probed states are the CTE probed_state, which the prepare hook writes to a work
    table first (citus__ema_prepare_series_state); the model's series_state reads that table. -#}
{% macro ema_series_state(series, kind) %}
    {%- set dual = kind == 'dual' -%}
    {%- set citus = var('barsmith_engine', 'postgres') == 'citus' -%}
    {% if is_incremental() %}
        probe as (
            select
                sp.id,
                sp.tf,
                sp.period,
                l.ts as last_ts,
                l.ema as l_ema,
                l.d1_roll as l_d1r,
                c.ema as c_ema,
                c.d1 as c_d1
                {%- if dual %},
                    l.ema_bar as l_ema_bar,
                    l.d1_roll_bar as l_d1rb,
                    c.ema_bar as c_ema_bar,
                    c.d1_bar as c_d1b
                {%- endif %}
            from {{ series }} as sp
            inner join {{ barsmith_ranges() }} as r on sp.id = r.id and r.mode in ('append', 'range')
            inner join lateral (
                {{ ema_last_target_row('sp', ['ts', 'ema', 'd1_roll'] + (['ema_bar', 'd1_roll_bar'] if dual else []),
                                       't.ts < r.from_ts') }}
            ) as l on true
            left join lateral (
                {{ ema_last_target_row('sp', ['ema', 'd1'] + (['ema_bar', 'd1_bar'] if dual else []),
                                       'not t.roll and t.ts < r.from_ts') }}
            ) as c on true
        ),

        {{ 'probed_state' if citus else 'series_state' }} as (
            select
                sp.id,
                sp.tf,
                sp.period,
                case
                    when p.last_ts is not null then row(
                        (p.last_ts at time zone 'UTC')::date,
                        null,
                        {% if kind == 'preview' %}p.c_ema, p.c_ema, p.l_ema, null, p.l_d1r, null, p.c_ema, p.c_d1, null, null
                        {% elif kind == 'daily' %}p.l_ema, null, p.l_ema, null, p.l_d1r, null, p.c_ema, p.c_d1, null, null
                        {% else %}p.c_ema_bar, null, p.l_ema, p.l_ema_bar, p.l_d1r, p.l_d1rb, p.c_ema, p.c_d1, p.c_ema_bar, p.c_d1b
                        {% endif %}
                    )::{{ adapter.quote(target.schema) }}.ema_state
                end as st
            from {{ series }} as sp
            left join probe as p on sp.id = p.id and sp.tf = p.tf and sp.period = p.period
        ),
        {%- if citus %}
        {{ barsmith_dispatch('ema_stored_series_state')() }}
        {%- endif %}
    {% else %}
        series_state as (
            select
                id,
                tf,
                period,
                null::{{ adapter.quote(target.schema) }}.ema_state as st
            from {{ series }}
        ),
    {% endif %}

    from_day as (
        -- spine arrays per id start after the earliest resume day (null = full history)
        select
            id,
            case when bool_or(st is null) then null else min((st).last_day) end as from_day
        from series_state
        group by id
    ),
{% endmacro %}

{#- What the walks of an EMA model read: `walk_calls` (one row per (id, tf): the series'
    periods, alphas and resume states, with the bar closes where the family has them) and
    `spine` (one row per id: the daily arrays), the last two CTEs of the family's inputs.
      incremental run: the CTEs themselves (a few hundred ids at most).
      full build: two unlogged work tables in the target schema, written by the prepare hook
        ema_prepare_walk_tables from the same CTEs and dropped by the finish hook. A scan of a CTE cannot run in a parallel worker; a scan of
        a table can, so the walks (nearly all of a full build's work) are shared by the
        server's parallel workers: `walk_calls` is written sparse (fillfactor 10) with
        parallel_workers = 2, so each worker takes a different set of (id, tf) series.
        Created in the model's transaction, the tables vanish with it when the build fails. -#}
{% macro ema_walk_relation(kind) -%}
    {%- if is_incremental() -%}
        {{ 'walk_calls' if kind == 'calls' else 'spine' }}
    {%- else -%}
        {{ api.Relation.create(database=this.database, schema=this.schema,
                               identifier=this.identifier ~ '__walk_' ~ kind) }}
    {%- endif -%}
{%- endmacro %}

{#- Part of the `prepare` hook of a full build: the work tables of ema_walk_relation, and a parallel plan for the
    walks (the planner cannot see what a call of ema_walk costs, so the costs it would weigh
    against the workers' start are set to zero for this transaction; max_parallel_workers_per_gather
    of the server still decides, 0 builds serially). inputs: the family's CTEs. -#}
{% macro ema_prepare_walk_tables(inputs) %}
    {% if var('barsmith_engine', 'postgres') == 'citus' %}
        {{ barsmith_dispatch('ema_prepare_walk_tables')(inputs) }}
    {% elif not is_incremental() %}
        drop table if exists {{ ema_walk_relation('calls') }}, {{ ema_walk_relation('spine') }};
        create unlogged table {{ ema_walk_relation('spine') }} as
        with {{ inputs }}
        select * from spine;
        create unlogged table {{ ema_walk_relation('calls') }} with (fillfactor = 10, parallel_workers = 2) as
        with {{ inputs }}
        select * from walk_calls
        order by id, tf;
        set local parallel_setup_cost = 0;
        set local parallel_tuple_cost = 0;
    {% endif %}
{% endmacro %}

{#- The walks of an EMA model: `with` the family's CTEs (inputs; an incremental run only, a
    full build reads the work tables), then the CTE `walks`, whose FROM is the caller's block
    after `from <walk_calls> as c inner join <spine> as s on c.id = s.id` (the caller adds the
    `cross join lateral ema_walk(...) as w`). The SELECT list is written here: the series key, the
    walk's ts, period and value columns (the _bar ones when dual). -#}
{% macro ema_walks(inputs, dual) %}
    {%- set columns = ['ema', 'roll', 'd1', 'd2', 'd1_roll', 'd2_roll']
        + (['ema_bar', 'd1_bar', 'd2_bar', 'd1_roll_bar', 'd2_roll_bar'] if dual else []) %}
    with
    {% if is_incremental() %}
        {{ inputs }},
    {% endif %}

    walks as (
        select
            c.id,
            c.tf,
            c.tf_days,
            w.ts,
            w.period,
            {%- for column in columns %}
                w.{{ column }}{% if not loop.last %},{% endif %}
            {%- endfor %}
        from {{ ema_walk_relation('calls') }} as c
        inner join {{ ema_walk_relation('spine') }} as s on c.id = s.id
        {{ caller() }}
    )
{% endmacro %}

{#- The last two CTEs of a family's inputs: `calls`, one row per (id, tf) of `series` (alias
    sr) with its periods, resume states (series_state) and the family's per-period arrays
    (arrays: [name, expression over sr] pairs, each aggregated in period order), then
    `walk_calls`: the calls with the bar closes of their (id, tf) (CTE `closes`: bar_days,
    bar_closes) when the family has them. -#}
{% macro ema_walk_calls(arrays, with_closes=true) %}
    calls as (
        select
            sr.id,
            sr.tf,
            sr.tf_days,
            array_agg(sr.period order by sr.period) as periods,
            {%- for name, expression in arrays %}
                array_agg({{ expression }} order by sr.period) as {{ name }},
            {%- endfor %}
            array_agg(st.st order by sr.period) as states
        from series as sr
        inner join series_state as st on sr.id = st.id and sr.tf = st.tf and sr.period = st.period
        group by sr.id, sr.tf, sr.tf_days
    ),

    walk_calls as (
        select
            c.*
            {%- if with_closes %},
                b.days as bar_days,
                b.closes as bar_closes
            {%- endif %}
        from calls as c
        {% if with_closes %}
            left join closes as b on c.id = b.id and c.tf = b.tf
        {% endif %}
    )
{% endmacro %}

{#- Per-id spine arrays and per-(id, tf) close arrays after each id's resume day (from_day). -#}
{% macro ema_walk_arrays(with_closes=true) %}
    spine as (
        select
            s.id,
            array_agg(s.day order by s.day) as days,
            array_agg(s.ts order by s.day) as tss,
            array_agg(s.x order by s.day) as xs,
            max(s.ts) as last_ts
            {%- if not with_closes %},
                min(s.pos) as pos0
            {%- endif %}
        from spine_rows as s
        inner join from_day as f on s.id = f.id
        where f.from_day is null or s.day > f.from_day
        group by s.id
    ),
    {% if with_closes %}

        closes as (
            select
                c.id,
                c.tf,
                array_agg(c.day order by c.day) as days,
                array_agg(c.close order by c.day) as closes
            from close_rows as c
            inner join from_day as f on c.id = f.id
            where f.from_day is null or c.day > f.from_day
            group by c.id, c.tf
        ),
    {% endif %}
{% endmacro %}
