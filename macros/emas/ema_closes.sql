{#- Bar closes of the EMA families and their running counts (emas.md §2.1, §4, §5).

    Which closes feed a family's bar recursion (OP-22, amended 2026-12-06): var('ema_start_date')
    clips only the daily spine (the rows emitted), never the bar table, so
      rolling  (multi_tf, §2.1): every canonical close of the bar table, also before the spine;
      anchored (cal_anchor, §5.1): every canonical close of the bar table, also before the spine;
      calendar (cal, §4.1): only closes whose day has a spine row, so from the spine start on.

    A series exists once the (id, tf) has at least `period` of those closes (OP-19). Counting
    every close on every run would read the whole bar history, so the count is kept per
    (model, id, tf) in barsmith_ema_close_counts with the UTC day through which bar rows were
    read (a bar row's canonical flag never changes once written, so later runs only read newer rows):
      hook prepare  ema_prepare_closes(): work table <model>__closes(id, tf, n_closes, counted_through) for
                the ids of the run: an id in 'append' mode adds the closes after its stored
                counted_through day to its stored count; any other id (rebuild, no stored count) is
                counted whole;
      the model reads its series from that table and only the closes after each id's resume day;
      hook written  ema_record_closes(): stores the new counts of those ids.
    Bars change only with the validated 1D bars, which decide the mode: a corrected or
    backfilled id is 'rebuild' and recounted whole. -#}

{% macro ema_closes_relation() -%}
    {{ barsmith_work_relation('closes') }}
{%- endmacro %}

{#- var('ema_start_date') (OP-22) as text: a date YYYY-MM-DD, or nothing when the var is empty or
    null (no clipping). Anything else stops the run with a clear error. (Renders its value instead
    of return()ing it: sqlfluff's renderer returns from the outermost macro.) -#}
{% macro ema_start_date() -%}
    {%- set value = var('ema_start_date', '2010-01-01') -%}
    {%- set value = '' if value is none else (value | string).strip() -%}
    {%- set digits = value.replace('-', '') -%}
    {#- (sqlfluff renders the models without dbt's `exceptions` and with a placeholder var) -#}
    {%- if exceptions is defined and value != '' and not (
        value | length == 10 and value[4] == '-' and value[7] == '-' and digits | length == 8 and digits.isdigit()
    ) -%}
        {{ exceptions.raise_compiler_error(
            "var ema_start_date must be a date YYYY-MM-DD or '' (no clipping), got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- value -}}
{%- endmacro %}

{#- The first instant of the daily spine of multi_tf, cal and cal_anchor (timestamptz):
    ema_start_date at 00:00 UTC, or -infinity when it is empty. -#}
{% macro ema_start_ts() -%}
    {%- set start = ema_start_date() | trim -%}
    {%- if start == '' -%}
        '-infinity'::timestamptz
    {%- else -%}
        ({{ sql_string(start) }}::timestamp at time zone 'UTC')
    {%- endif -%}
{%- endmacro %}

{#- The closes (day, close) of one (id, tf) pair `p` (columns id, tf, after_day) with
    day > p.after_day (NULL: all), through the (id, tf, time_close) index of the bars.
      rolling:  canonical rows of the rolling bars; tf 1D: the validated daily bars (§2.3); all
                history, ema_start_date does not apply (OP-22)
      calendar: canonical rows of the calendar bars that have a spine row that UTC day, whose
                close is taken (§4): from ema_start_date, as the spine
      anchored: the canonical row of each anchored bar (§5); all history (OP-22)
    leg (rolling): 'bars' (tf <> 1D), 'daily' (tf 1D) or 'all' (the union of both). On Citus the
    rolling legs and the anchored DISTINCT ON name the bars' id too (barsmith_shard_key: Citus
    pushes a UNION or a DISTINCT ON down only with the distribution column). -#}
{% macro ema_closes_after(kind, bars, p, leg='all') %}
    {%- set lower -%}
        coalesce(({{ p }}.after_day + 1)::timestamp at time zone 'UTC', '-infinity'::timestamptz)
    {%- endset -%}
    {% if kind == 'rolling' %}
        {%- if leg != 'daily' %}
        select
            {{ barsmith_shard_key('b.id') }}(b.time_close at time zone 'UTC')::date as day,
            b.close
        from {{ ref(bars) }} as b
        where
            {{ p }}.tf <> '1D' and b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
            and b.time_close >= {{ lower }}
        {%- endif %}
        {%- if leg == 'all' %}
        union all
        {%- endif %}
        {%- if leg != 'bars' %}
        select
            {{ barsmith_shard_key('d.id') }}(d.time_close at time zone 'UTC')::date as day,
            d.close
        from {{ ref('price_bars_1d') }} as d
        where
            {{ p }}.tf = '1D' and d.id = {{ p }}.id and not d.is_partial_end
            and d.time_close >= {{ lower }}
        {%- endif %}
    {% elif kind == 'calendar' %}
        select
            s.day,
            s.close
        from {{ ref(bars) }} as b
        cross join lateral (
            select
                (d.time_close at time zone 'UTC')::date as day,
                d.close
            from {{ ref('price_bars_1d') }} as d
            where
                d.id = b.id and not d.is_partial_end
                and d.time_close >= {{ ema_start_ts() }}
                and d.time_close >= ((b.time_close at time zone 'UTC')::date)::timestamp at time zone 'UTC'
                and d.time_close < ((b.time_close at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC'
            -- a fence: one index probe per close. Flattened, the planner (short of close
            -- estimates) scanned the id's whole daily history per (id, tf) and filtered it
            -- against every close: 55 s instead of 0.6 s at 100 x 3000 days
            offset 0
        ) as s
        where
            b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
            and b.time_close >= coalesce(
                ({{ p }}.after_day + 1)::timestamp at time zone 'UTC', '-infinity'::timestamptz
            )
    {% else %}
        select distinct on ({{ barsmith_shard_key('b.id') }}b.bar_seq)
            (b.time_close at time zone 'UTC')::date as day,
            b.close
        from {{ ref(bars) }} as b
        where
            b.id = {{ p }}.id and b.tf = {{ p }}.tf and not b.is_partial_end
            and b.time_close >= {{ lower }}
        order by {{ barsmith_shard_key('b.id') }}b.bar_seq, b.time_close desc
    {% endif %}
{% endmacro %}

{#- The model's close_rows CTE body: (id, tf, day, close) of every timeframe after each id's
    resume day (from_day of ema_series_state; NULL = every close ema_closes_after gives). On Citus
    the rolling closes are a union of two laterals, one per leg (Citus cannot push a union inside
    the lateral down), and the lateral has no OFFSET fence (Citus pushes no OFFSET down beside the
    timeframes' reference table). -#}
{% macro ema_close_rows_after_resume(kind, bars) %}
    {%- set citus = var('barsmith_engine', 'postgres') == 'citus' -%}
    {%- for leg in (['bars', 'daily'] if citus and kind == 'rolling' else ['all']) %}
    {%- if not loop.first %}
    union all
    {%- endif %}
    select
        p.id,
        p.tf,
        c.day,
        c.close
    from (
        select
            f.id,
            t.tf,
            f.from_day as after_day
        from from_day as f
        cross join timeframes as t
    ) as p
    {%- if not citus %}
    -- fenced (offset 0): evaluated per (id, tf) from its resume day. Flattened, the planner read
    -- every close of the bar table and looked each one up before it applied the resume day
    {%- endif %}
    cross join lateral (
        select
            x.day,
            x.close
        from ({{ ema_closes_after(kind, bars, 'p', leg) }}) as x
        {%- if not citus %}
        offset 0
        {%- endif %}
    ) as c
    {%- endfor %}
{% endmacro %}

{# Part of the `prepare` hook (after the ranges). #}
{% macro ema_prepare_closes(kind, bars) %}
    {%- set model = this.identifier -%}
    {% call barsmith_work_table('closes') %}
    with timeframes as (
        {{ ema_timeframes() }}
    ),

    ids as (
        select
            id,
            bool_and(mode = 'append') as appending
        from {{ barsmith_ranges() }}
        group by id
    ),

    pairs as (
        select
            i.id,
            t.tf,
            k.n_closes as n_before,
            k.counted_through as after_day
        from ids as i
        cross join timeframes as t
        {% if var('barsmith_engine', 'postgres') == 'citus' and not is_incremental() %}
            -- a full build counts every close (Citus cannot plan the join on a false condition)
            left join (select null::bigint as n_closes, null::date as counted_through) as k on true
        {% else %}
        left join {{ source('barsmith', 'barsmith_ema_close_counts') }} as k
            on
                k.model = {{ sql_string(model) }} and i.id = k.id and t.tf = k.tf
                and i.appending and {{ 'true' if is_incremental() else 'false' }}
        {% endif %}
    )

    select
        p.id,
        p.tf,
        coalesce(p.n_before, 0) + c.n_new as n_closes,
        greatest(c.last_new, p.after_day, (l.last_ts at time zone 'UTC')::date) as counted_through
    from pairs as p
    cross join lateral (
        select
            count(*) as n_new,
            max(x.day) as last_new
        from ({{ ema_closes_after(kind, bars, 'p') }}) as x
    ) as c
    left join lateral (
        -- the newest bar row read (index probe)
        {% if kind == 'rolling' %}
            select max(b.time_close) as last_ts from {{ ref(bars) }} as b
            where p.tf <> '1D' and b.id = p.id and b.tf = p.tf
            union all
            select max(d.time_close) from {{ ref('price_bars_1d') }} as d
            where p.tf = '1D' and d.id = p.id
        {% else %}
            select max(b.time_close) as last_ts from {{ ref(bars) }} as b
            where b.id = p.id and b.tf = p.tf
        {% endif %}
    ) as l on l.last_ts is not null
    {% endcall %}
    analyze {{ ema_closes_relation() }};
{% endmacro %}

{# Part of the `written` hook: the counts of the ids of this run replace their stored ones. #}
{% macro ema_record_closes() %}
    {%- set model = this.identifier -%}
    delete from {{ source('barsmith', 'barsmith_ema_close_counts') }} as k
    using (select distinct r.id from {{ barsmith_ranges() }} as r) as i
    where k.model = {{ sql_string(model) }} and k.id = i.id;

    insert into {{ source('barsmith', 'barsmith_ema_close_counts') }} (model, id, tf, n_closes, counted_through)
    select
        {{ sql_string(model) }},
        id,
        tf,
        n_closes,
        counted_through
    from {{ ema_closes_relation() }}
    where counted_through is not null;
{% endmacro %}
