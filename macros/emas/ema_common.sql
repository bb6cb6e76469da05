{#- Pieces shared by the six EMA models (emas.md). -#}

{# Input of the EMA models for range detection: the validated 1D bars (the spine, OP-12). #}
{% macro ema_input() -%}
    select
        id,
        "timestamp" as ts,
        src_load_ts as changed_at
    from {{ ref('price_bars_1d') }}
    where {{ asset_filter('id') }}
{%- endmacro %}

{# The periods of a family: var('ema_periods') when given, else the seed (v2: its defaults). #}
{% macro ema_periods_array(v2=false) -%}
    {%- set given = int_list(list_var('ema_periods')) -%}
    {%- if given | length > 0 -%}
        array[{{ given | join(', ') }}]::integer[]
    {%- else -%}
        (select array_agg(period order by period) from {{ ref('ema_periods') }}
         {%- if v2 %} where is_v2_default{% endif %})
    {%- endif -%}
{%- endmacro %}

{# Restriction to var('tf_period_combos') (list of {tf, period}); `true` when empty. #}
{% macro ema_combo_filter(tf_column, period_column) -%}
    {%- set combos = list_var('tf_period_combos') -%}
    {%- if combos | length > 0 -%}
        ({{ tf_column }}, {{ period_column }}) in (
            {%- for c in combos %}({{ sql_string(c['tf']) }}, {{ c['period'] | int }}){% if not loop.last %}, {% endif %}{% endfor -%}
        )
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{# True when this run computes a subset of the series (filters): fingerprints are then not
   recorded, so the next unfiltered run catches the other series up. #}
{% macro ema_run_is_filtered() -%}
    {{ return(list_var('timeframes') | length > 0 or list_var('ema_periods') | length > 0
              or list_var('tf_period_combos') | length > 0) }}
{%- endmacro %}

{# Target rows (alias t) of the series a filtered run recomputes (strategy range_part_match). #}
{% macro ema_series_match() -%}
    {%- set tfs = list_var('timeframes') -%}
    {%- set periods = int_list(list_var('ema_periods')) -%}
    {%- if tfs | length > 0 %}t.tf in ({% for tf in tfs %}{{ sql_string(tf) }}{% if not loop.last %}, {% endif %}{% endfor %}){% else %}true{% endif %}
    {%- if periods | length > 0 %} and t.period in ({{ periods | join(', ') }}){% endif %}
    {%- if list_var('tf_period_combos') | length > 0 %} and {{ ema_combo_filter('t.tf', 't.period') }}{% endif %}
{%- endmacro %}

{#- Range signature of an EMA family: its timeframes, periods and spine start (not v2's, whose
    spine is never clipped), and the semantics version 'op22': tables built before OP-22's
    amendment (closes clipped at the start date) are rebuilt once. -#}
{% macro ema_parts(tf_relation_sql, v2=false) -%}
    select
        ''::text as part,
        md5(
            coalesce((select string_agg(tf || ':' || tf_days, ',' order by tf) from ({{ tf_relation_sql }}) as x), '')
            || '|' || {{ ema_periods_array(v2) }}::text
            || '|' || {{ sql_string('' if v2 else ema_start_date() | trim) }}
            || '|' || {{ var('ema_min_obs_multiplier', 1) | int }}
            || '|op22'
        ) as signature
{%- endmacro %}

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
            and b.id in (select r.id from {{ ranges_relation() }} as r)
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

{#- Resume state per series from the target (OP-15): ids in 'append' mode continue after their
    last stored row; every other series (new, or an id to rebuild) starts from scratch.
    kind: 'preview' (multi_tf: e = last canonical ema), 'daily' (v2: e = last ema),
    'dual' (cal, cal_anchor).
    The values come from barsmith_ema_resume_state (one row per series, written by the walk that
    ended it: ema_walks); a series without a row there (a table built before that
    table existed, or whose row was lost) probes the target through its indexes instead: its
    last row and last canonical row(s). -#}
{% macro ema_series_state(series, kind) %}
    {% if is_incremental() %}
        probe as (
            select
                sp.id,
                sp.tf,
                sp.period,
                r.mode,
                case when k.id is null then l.ts else k.last_ts end as last_ts,
                case when k.id is null then l.ema else k.l_ema end as l_ema,
                case when k.id is null then l.d1_roll else k.l_d1r end as l_d1r,
                case when k.id is null then c.ema else k.c_ema end as c_ema,
                case when k.id is null then c.d1 else k.c_d1 end as c_d1
                {%- if kind == 'dual' %},
                    case when k.id is null then l.ema_bar else k.l_ema_bar end as l_ema_bar,
                    case when k.id is null then l.d1_roll_bar else k.l_d1rb end as l_d1rb,
                    case when k.id is null then cb.ema_bar else k.cb_ema_bar end as c_ema_bar,
                    case when k.id is null then cb.d1_bar else k.cb_d1b end as c_d1b
                {%- endif %}
            from {{ series }} as sp
            inner join {{ ranges_relation() }} as r on sp.id = r.id
            left join {{ ema_resume_state_table() }} as k
                on
                    k.model = {{ sql_string(this.identifier) }} and k.id = sp.id and k.tf = sp.tf
                    and k.period = sp.period and r.mode = 'append'
            left join lateral (
                {{ ema_last_target_row(
                    'sp', ['ts', 'ema', 'd1_roll'] + (['ema_bar', 'd1_roll_bar'] if kind == 'dual' else []),
                    "r.mode = 'append' and k.id is null") }}
            ) as l on true
            left join lateral (
                {{ ema_last_target_row('sp', ['ema', 'd1'], "not t.roll and r.mode = 'append' and k.id is null") }}
            ) as c on true
            {% if kind == 'dual' %}
                left join lateral (
                    {{ ema_last_target_row(
                        'sp', ['ema_bar', 'd1_bar'], "not t.roll_bar and r.mode = 'append' and k.id is null") }}
                ) as cb on true
            {% endif %}
        ),

        series_state as (
            select
                id,
                tf,
                period,
                case
                    when last_ts is not null then row(
                        (last_ts at time zone 'UTC')::date,
                        null,
                        {% if kind == 'preview' %}c_ema, c_ema, l_ema, null, l_d1r, null, c_ema, c_d1, null, null
                        {% elif kind == 'daily' %}l_ema, null, l_ema, null, l_d1r, null, c_ema, c_d1, null, null
                        {% else %}c_ema_bar, null, l_ema, l_ema_bar, l_d1r, l_d1rb, c_ema, c_d1, c_ema_bar, c_d1b
                        {% endif %}
                    )::{{ target.schema }}.ema_state
                end as st
            from probe
        ),
    {% else %}
        series_state as (
            select
                id,
                tf,
                period,
                null::{{ target.schema }}.ema_state as st
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

{#- Pre-hook: barsmith_ema_resume_state keeps the rows of the series a run resumes ('append'
    ids); the walks of this run write every series they end (ema_walks). Ids that are
    not appended (rebuilt, vanished) lose their rows first; a full build empties the model's. -#}
{% macro ema_forget_resume_state(model) %}
    delete from {{ ema_resume_state_table() }} as k
    {% if is_incremental() %}
        using {{ ranges_relation() }} as r
        where k.model = {{ sql_string(model) }} and k.id = r.id and r.mode <> 'append'
    {% else %}
        where k.model = {{ sql_string(model) }}
    {% endif %}
{% endmacro %}

{#- The instant of a series' final-state row (ts null) of ema_walk(..., p_emit_state => true): the
    state's last_day is the last spine day the walk consumed, so its ts is the spine's last one
    (the row the probe of ema_series_state would find); null when the walk consumed no day. -#}
{% macro ema_walk_state_ts(walk, spine) -%}
    case
        when ({{ walk }}.state).last_day = {{ spine }}.days[cardinality({{ spine }}.days)]
            then {{ spine }}.tss[cardinality({{ spine }}.tss)]
    end
{%- endmacro %}

{#- What the walks of an EMA model read: `walk_calls` (one row per (id, tf): the series'
    periods, alphas and resume states, with the bar closes where the family has them) and
    `spine` (one row per id: the daily arrays), the last two CTEs of the family's inputs.
      incremental run: the CTEs themselves (a few hundred ids at most).
      full build: two unlogged work tables in the target schema, written by the pre-hook
        ema_prepare_walk_tables from the same CTEs and dropped by the post-hook
        ema_keep_full_build_states. A scan of a CTE cannot run in a parallel worker; a scan of
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

{#- Pre-hook of a full build: the work tables of ema_walk_relation, and a parallel plan for the
    walks (the planner cannot see what a call of ema_walk costs, so the costs it would weigh
    against the workers' start are set to zero for this transaction; max_parallel_workers_per_gather
    of the server still decides, 0 builds serially). inputs: the family's CTEs. -#}
{% macro ema_prepare_walk_tables(inputs) %}
    {% if not is_incremental() %}
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

{#- Post-hook of a full build: the resume values of every series (barsmith_ema_resume_state),
    probed from the table just built through its unique and canonical indexes (a few index
    steps per series), then the work tables dropped. These are the values an incremental run's
    walks store from their final states (kept_states): the last row's ema / d1_roll (and
    ema_bar / d1_roll_bar), the last canonical row's ema / d1 (and the last roll_bar = false
    row's ema_bar / d1_bar), for a series whose last row is the spine's last day and has an
    ema. (A volatile call that stored each state as its walk ended would make the whole
    statement parallel-unsafe.) -#}
{% macro ema_keep_full_build_states(dual) %}
    {% if not is_incremental() %}
        insert into {{ ema_resume_state_table() }} (
            model, id, tf, period, last_ts, l_ema, l_d1r, l_ema_bar, l_d1rb, c_ema, c_d1, cb_ema_bar, cb_d1b
        )
        select
            {{ sql_string(this.identifier) }},
            sp.id,
            sp.tf,
            sp.period,
            l.ts,
            l.ema,
            l.d1_roll,
            {% if dual %}l.ema_bar, l.d1_roll_bar{% else %}null, null{% endif %},
            c.ema,
            c.d1,
            {% if dual %}cb.ema_bar, cb.d1_bar{% else %}null, null{% endif %}
        from (
            select
                w.id,
                w.tf,
                p.period,
                s.last_ts as spine_last_ts
            from {{ ema_walk_relation('calls') }} as w
            inner join {{ ema_walk_relation('spine') }} as s on w.id = s.id
            cross join lateral unnest(w.periods) as p (period)
        ) as sp
        inner join lateral (
            {{ ema_last_target_row('sp', ['ts', 'ema', 'd1_roll'] + (['ema_bar', 'd1_roll_bar'] if dual else []), 'true') }}
        ) as l on l.ts = sp.spine_last_ts and l.ema is not null
        left join lateral (
            {{ ema_last_target_row('sp', ['ema', 'd1'], 'not t.roll') }}
        ) as c on true
        {% if dual %}
            left join lateral (
                {{ ema_last_target_row('sp', ['ema_bar', 'd1_bar'], 'not t.roll_bar') }}
            ) as cb on true
        {% endif %};
        drop table {{ ema_walk_relation('calls') }}, {{ ema_walk_relation('spine') }};
    {% endif %}
{% endmacro %}

{#- The walks of an EMA model: `with` the family's CTEs (inputs; an incremental run only, a
    full build reads the work tables), then the CTE `walks`, whose FROM is the caller's block
    after `from <walk_calls> as c inner join <spine> as s on c.id = s.id` (the caller adds the
    `cross join lateral ema_walk(...) as w`, with ema_walk_emits_state() as its last argument).
    The SELECT list is written here: the series key, the walk's ts, period and value columns
    (the _bar ones when dual). The model selects its columns from `walks` where ts is not null.
    Incremental run: each series ends with a final-state row (ts null) holding its resume values
    for barsmith_ema_resume_state, and one INSERT ... ON CONFLICT of the same statement stores
    them all (kept_states). A full build emits no state rows; ema_keep_full_build_states probes
    the resume values from the built table. -#}
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
                w.{{ column }}{% if is_incremental() or not loop.last %},{% endif %}
            {%- endfor %}
            {%- if is_incremental() %}
                w.state,
                {{ ema_walk_state_ts('w', 's') }} as state_last_ts
            {%- endif %}
        from {{ ema_walk_relation('calls') }} as c
        inner join {{ ema_walk_relation('spine') }} as s on c.id = s.id
        {{ caller() }}
    )
    {% if is_incremental() %}

        , kept_states as (
            {{ ema_resume_state_insert(
                sql_string(this.identifier), 'k.id', 'k.tf', 'k.period', 'k.state_last_ts', 'k.state',
                'true' if dual else 'false',
                'from walks as k where k.ts is null and k.state_last_ts is not null and (k.state).ema is not null'
            ) }}
        )
    {% endif %}
{% endmacro %}

{# The last argument of ema_walk in ema_walks: final-state rows only in incremental runs. #}
{% macro ema_walk_emits_state() -%}
    {{ 'true' if is_incremental() else 'false' }}
{%- endmacro %}

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

{# Timeframes of ema_multi_tf and ema_multi_tf_v2 (OP-13): tf_day, digits + D, canonical. #}
{% macro ema_tf_day_timeframes_sql() -%}
    select
        tf,
        tf_days_nominal as tf_days
    from {{ ref('dim_timeframe') }}
    where
        alignment_type = 'tf_day' and tf ~ '^[0-9]+D$' and is_canonical and not is_intraday
        and tf_days_nominal > 0 and {{ timeframe_filter('tf') }}
{%- endmacro %}

{% macro ema_v2_timeframes_sql() -%}
    {{ ema_tf_day_timeframes_sql() }}
{%- endmacro %}

{#- The config every EMA model shares: range-incremental on (id, tf, period, ts), resume values
    kept in barsmith_ema_resume_state (dropped for the ids a run rebuilds; probed through the
    unique and canonical indexes when missing), a canonical-uniqueness guard (emas.md §1.5), the
    rows written queued for ema_rejects (macros/emas/ema_rejects.sql), fingerprints only for
    unfiltered runs, the work tables of a full build's walks (ema_walk_relation).
    timeframes_call / inputs_call: macro calls giving the family's timeframe selector and its
    CTEs (macros/emas/ema_inputs.sql); dual: the family has the _bar columns. -#}
{% macro ema_model_config(model, timeframes_call, tags, inputs_call, v2=false, closes=none, dual=false) %}
    {{ config(
        incremental_strategy='replace_ranges',
        range_column='ts',
        range_part_match=ema_series_match(),
        unique_key=['id', 'tf', 'period', 'ts'],
        indexes=[{'columns': ['id', 'tf', 'period', 'ts'], 'unique': true}],
        validation_queue=true,
        pre_hook=[
            "{{ barsmith_prepare_ranges('" ~ model ~ "', ema_input(), ema_parts(" ~ timeframes_call ~ ", v2=" ~ v2 ~ "), range_as_rebuild=true) }}",
            "{{ ema_forget_resume_state('" ~ model ~ "') }}",
        ] + ([
            "{{ ema_prepare_closes('" ~ model ~ "', '" ~ closes[0] ~ "', '" ~ closes[1] ~ "', " ~ timeframes_call ~ ") }}",
        ] if closes else []) + [
            "{{ ema_prepare_walk_tables(" ~ inputs_call ~ ") }}",
        ],
        post_hook=[
            "{% if not ema_run_is_filtered() %}{{ barsmith_record_fingerprints('" ~ model ~ "') }}{% endif %}",
        ] + ([
            "{{ ema_record_closes('" ~ model ~ "') }}",
        ] if closes else []) + [
            "{{ barsmith_create_index_once('" ~ model ~ "_canonical', '(id, tf, period, ts) where not roll', unique=true) }}",
            "{{ barsmith_audit() }}",
            "{{ ema_enqueue_full_build() }}",
            "{{ barsmith_analyze_full_build() }}",
            "{{ ema_keep_full_build_states(" ~ dual ~ ") }}",
        ],
        audit_counts={'canonical': 'not roll'},
        tags=tags,
    ) }}
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
