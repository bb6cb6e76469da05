{#- Output validation of emas.md §7.1 (OP-14, amended 2026-12-06): point-in-time verdicts.

    For an EMA row (id, tf, period, ts) the first failing check of
      1 nan                        ema is null or NaN
      2 infinity                   ema is +/-Infinity
      3 negative                   ema < 0
      4 out_of_price_bounds        ema < 0.5 * min(close) or ema > 2 * max(close), over the validated
                                   1D closes of the id with time_close in [ts - 90 days, ts]
                                   (skipped when there is none)
      5 out_of_statistical_bounds  ema outside mean +/- 3 * sample stddev of the previous 100 rows of
                                   the series (their finite ema values; skipped when fewer than 10)
    A verdict depends only on the data, never on the day the check runs, so ema_rejects is
    maintained like every other model (extension `ema_rejects` of barsmith_incremental).

    Rule 5 is decided in exact numeric arithmetic: mean = s1 / n and std = sqrt((n * s2 - s1^2) /
    (n * (n - 1))) from the exact sums (n, s1, s2) of the window's values (ema::numeric), so every
    way of computing them gives the same verdict and the same bounds_info. Three ways:
      whole table  (a full build, or an EMA table's full build) one ordered pass over the table:
                   window sums in float8 from prefix sums, with a bound on their rounding error;
                   a row is certainly inside its bounds, or its window is read again (100 rows by
                   the unique index) and summed exactly. About one row in a thousand is read again.
      appended     a series whose new rows all follow the window kept in
                   barsmith_ema_stat_windows (its last 100 values and their exact sums): each new
                   row's window sums follow from the kept ones, the values added and the values
                   leaving; only the series' new rows are read, not its history.
      rewritten    a series rewritten from an instant inside its kept window (a correction, a
                   backfill) or without a kept window: the 100 rows before the instant are read
                   by the unique index, then as appended.
    The run then keeps each judged series' new window (hook `written`). -#}

{#- The EMA tables judged: the model's input (config input {'changes_of': [...]}). -#}
{% macro ema_rejects_tables() -%}
    {{ return(config.get('input')['changes_of']) }}
{%- endmacro %}

{# The value rule 5 reads: the finite ema, else null. #}
{% macro ema_rejects_finite(column) -%}
    case when {{ column }} not in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) then {{ column }} end
{%- endmacro %}

{#- stat_n, stat_mean, stat_std of rule 5 from the exact window sums (null under 10 values).
    trim_scale: equal sums reached by different additions print with different scales, which
    would change the scale of the division. -#}
{% macro ema_rejects_stats(n, s1, s2) -%}
    {{ n }} as stat_n,
    case when {{ n }} >= 10 then trim_scale({{ s1 }}) / {{ n }} end as stat_mean,
    case
        when {{ n }} < 10 then null
        when {{ n }} * trim_scale({{ s2 }}) - trim_scale({{ s1 }}) * trim_scale({{ s1 }}) <= 0 then 0::numeric
        else sqrt(({{ n }} * trim_scale({{ s2 }}) - trim_scale({{ s1 }}) * trim_scale({{ s1 }})) / ({{ n }} * ({{ n }} - 1)))
    end as stat_std
{%- endmacro %}

{#- The last 100 rows of the series `s` (columns id, tf, period) of `table` before the instant
    `before` (none: its last 100 rows), read backwards through the unique index: their instant
    and the value rule 5 reads (`numeric`: already converted). -#}
{% macro ema_rejects_last_rows(table, s, before=none, numeric=false) -%}
    select
        e.ts,
        {{ ema_rejects_finite('e.ema') }}{{ '::numeric' if numeric }} as v
    from {{ table }} as e
    where
        e.id = {{ s }}.id and e.tf = {{ s }}.tf and e.period = {{ s }}.period
        {%- if before %} and e.ts < {{ before }}{% endif %}
    order by e.ts desc
    limit 100
{%- endmacro %}

{#- The window those rows make (barsmith_ema_stat_windows' columns): the last instant, the values
    oldest first, their exact sums and count. `gate`: a condition on the caller's rows only; when
    false nothing is read (a one-time filter above the index scan). -#}
{% macro ema_rejects_window(table, s, before=none, gate='true') -%}
    select
        max(q.ts) as last_ts,
        array_agg(q.v order by q.ts) as vals,
        trim_scale(sum(q.v::numeric)) as s1,
        trim_scale(sum(q.v::numeric * q.v::numeric)) as s2,
        count(q.v) as n
    from ({{ ema_rejects_last_rows(table, s, before) }}) as q
    where {{ gate }}
{%- endmacro %}

{#- The exact sums array[n, s1, s2] of the window of the row `r` (columns id, tf, period, ts) of
    `table` (a scalar subquery). -#}
{% macro ema_rejects_exact_sums(table, r) -%}
    (
        select array[count(p.v), sum(p.v), sum(p.v * p.v)]
        from ({{ ema_rejects_last_rows(table, r, before=r ~ '.ts', numeric=true) }}) as p
    )
{%- endmacro %}

{#- True when the float8 window sums of row `f` prove the row inside mean +/- 3 std whatever their
    rounding: f.s1, f.s2 are differences of prefix sums over at most f.pos terms whose squares
    sum to at most f.p2; recursive summation errs by at most (terms * unit roundoff) * sum of |x|,
    and sum |x| <= sqrt(terms * sum x^2). u = 1e-15 (about 9 unit roundoffs) also covers the
    15-digit numeric conversion of each value. -#}
{% macro ema_rejects_surely_inside(f) -%}
    {%- set u = '1e-15::float8' -%}
    {%- set n = f ~ '.n::float8' -%}
    {%- set e1 = '(2 * ' ~ f ~ '.pos * ' ~ u ~ ' * sqrt(' ~ f ~ '.pos * ' ~ f ~ '.p2) + ' ~ u ~ ' * abs(' ~ f ~ '.s1))' -%}
    {%- set e2 = '(2 * ' ~ f ~ '.pos * ' ~ u ~ ' * ' ~ f ~ '.p2 + ' ~ u ~ ' * abs(' ~ f ~ '.s2))' -%}
    {%- set mean = '(' ~ f ~ '.s1 / ' ~ n ~ ')' -%}
    {%- set q = '(' ~ n ~ ' * ' ~ f ~ '.s2 - ' ~ f ~ '.s1 * ' ~ f ~ '.s1)' -%}
    {%- set eq = '(' ~ n ~ ' * ' ~ e2 ~ ' + 2 * abs(' ~ f ~ '.s1) * ' ~ e1 ~ ' + ' ~ e1 ~ ' ^ 2 + 4 * ' ~ u
                 ~ ' * (' ~ n ~ ' * abs(' ~ f ~ '.s2) + ' ~ f ~ '.s1 ^ 2))' -%}
    abs({{ f }}.ema - {{ mean }}) + {{ e1 }} / {{ n }} + 3 * {{ u }} * (abs({{ f }}.ema) + abs({{ mean }}))
        < 3 * (1 - 4 * {{ u }}) * sqrt(greatest({{ q }} - {{ eq }}, 0) / ({{ n }} * ({{ n }} - 1)))
{%- endmacro %}

{#- Every row of `ema_table` (where `condition`), judged: rule 5's statistics where the float
    pass cannot rule it out (else null: the row passes rule 5). -#}
{% macro ema_rejects_whole_table(ema_table, condition='true') %}
    {%- set table = ref(ema_table) -%}
    select
        {{ sql_string(ema_table) }}::text as source_table,
        x.id::integer as id,
        x.tf,
        x.period,
        x.ts,
        x.ema,
        {{ ema_rejects_stats('x.sums[1]', 'x.sums[2]', 'x.sums[3]') }}
    from (
    select
        f.id,
        f.tf,
        f.period,
        f.ts,
        f.ema,
        -- the exact window where the float sums cannot rule rule 5 out (about 1 row in 100)
        case
            when f.n >= 10 and f.v is not null and not ({{ ema_rejects_surely_inside('f') }})
                then {{ ema_rejects_exact_sums(table, 'f') }}
        end as sums
    from (
        select
            p.id,
            p.tf,
            p.period,
            p.ts,
            p.ema,
            p.v,
            p.pos,
            p.p2,
            p.n_to - coalesce(p.n_before, 0) as n,
            p.p1 - coalesce(p.q1, 0) as s1,
            p.p2 - coalesce(p.q2, 0) as s2
        from (
            -- prefix sums up to the row before (a) and up to the 101st row before (b): one
            -- ordered pass, each frame grows at its end only
            select
                t.id,
                t.tf,
                t.period,
                t.ts,
                t.ema,
                t.v,
                row_number() over a as pos,
                count(t.v) over a as n_to,
                sum(t.v) over a as p1,
                sum(t.v * t.v) over a as p2,
                count(t.v) over b as n_before,
                sum(t.v) over b as q1,
                sum(t.v * t.v) over b as q2
            from (
                select
                    e.id,
                    e.tf,
                    e.period,
                    e.ts,
                    e.ema,
                    {{ ema_rejects_finite('e.ema') }} as v
                from {{ table }} as e
                where {{ condition }}
            ) as t
            window
                a as (partition by t.id, t.tf, t.period order by t.ts rows between unbounded preceding and 1 preceding),
                b as (partition by t.id, t.tf, t.period order by t.ts rows between unbounded preceding and 101 preceding)
        ) as p
    ) as f
    -- (a fence: else the planner would copy `sums`, and its subquery, into every use below)
    offset 0
    ) as x
{% endmacro %}

{#- The rows of the changed series of `ema_table` (work table `rule5_bases`: the window before
    each series' first changed instant), from that instant on, numbered, with the value each row
    pushes out of the window after it (the base window's values, then the series' own rows). -#}
{% macro ema_rejects_series_rows(ema_table) %}
    select
        b.model,
        b.id,
        b.tf,
        b.period,
        b.n as base_n,
        b.s1 as base_s1,
        b.s2 as base_s2,
        t.ts,
        t.ema,
        t.v,
        t.v::numeric as vn,
        case
            when cardinality(b.vals) + row_number() over s - 100 < 1 then null
            when row_number() over s <= 100 then b.vals[cardinality(b.vals) + row_number() over s - 100]::numeric
            else (lag(t.v, 100) over s)::numeric
        end as leaving
    from {{ barsmith_work_relation('rule5_bases') }} as b
    cross join lateral (
        select
            e.ts,
            e.ema,
            {{ ema_rejects_finite('e.ema') }} as v
        from {{ ref(ema_table) }} as e
        where e.id = b.id and e.tf = b.tf and e.period = b.period and e.ts >= b.from_ts
        -- (a fence: one index probe per series; pulled up into a join, the planner may sort the
        -- whole EMA table for a merge join when it expects hundreds of rows per series)
        offset 0
    ) as t
    where b.model = {{ sql_string(ema_table) }}
    window s as (partition by b.id, b.tf, b.period order by t.ts)
{% endmacro %}

{#- The changed series' rows of every EMA table with the exact sums (n, s1, s2) of the window
    before each row: the base window's sums, plus the values added, minus those that left. -#}
{% macro ema_rejects_series_windows() %}
    select
        r.*,
        r.base_n + coalesce(sum((r.vn is not null)::int - (r.leaving is not null)::int) over w, 0) as n,
        r.base_s1 + coalesce(sum(coalesce(r.vn, 0) - coalesce(r.leaving, 0)) over w, 0) as s1,
        r.base_s2 + coalesce(sum(coalesce(r.vn * r.vn, 0) - coalesce(r.leaving * r.leaving, 0)) over w, 0) as s2
    from (
        {%- for t in ema_rejects_tables() %}
        {{ ema_rejects_series_rows(t) }}
        {% if not loop.last %}union all{% endif %}
        {%- endfor %}
    ) as r
    window w as (partition by r.model, r.id, r.tf, r.period order by r.ts rows between unbounded preceding and 1 preceding)
{% endmacro %}

{#- The rows to judge of every EMA table: whole tables on a full build (or after that table's full
    build), else the changed series from their first changed instant. -#}
{% macro ema_rejects_judged(tables) %}
    {%- for t in tables %}
        {%- if is_incremental() %}
            {{ ema_rejects_whole_table(t, ema_rejects_full_build_of(t)) }}
        {%- else %}
            {{ ema_rejects_whole_table(t) }}
        {%- endif %}
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
    {%- if is_incremental() %}
        union all
        select
            r.model as source_table,
            r.id,
            r.tf,
            r.period,
            r.ts,
            r.ema,
            {{ ema_rejects_stats('r.n', 'r.s1', 'r.s2') }}
        from {{ barsmith_work_relation('rule5_rows') }} as r
    {%- endif %}
{% endmacro %}

{% macro ema_rejects_full_build_of(ema_table) -%}
    exists (select 1 from {{ barsmith_ranges() }} as r where r.model = {{ sql_string(ema_table) }} and r.full_build)
{%- endmacro %}

{#- Hook `prepare` (incremental runs): the changed series of the EMA tables whose table was not
    rebuilt, with the window before their first changed instant: the kept one when it ends
    before that instant, else the 100 rows before it, read by the unique index. -#}
{% macro ema_rejects_prepare(full_build) %}
    {% if not full_build %}
        {% call barsmith_work_table('rule5_series') %}
            {{ ema_rejects_changed_series() }}
        {% endcall %}
        -- the series whose kept window reaches into a range an EMA model deleted: their window
        -- is taken again from the rows left (and their rows from the instant judged again)
        insert into {{ barsmith_work_relation('rule5_series') }} (model, id, tf, period, from_ts)
        select
            r.model,
            r.id,
            k.tf,
            k.period,
            min(r.from_ts)
        from {{ barsmith_ranges() }} as r
        inner join {{ source('barsmith', 'barsmith_ema_stat_windows') }} as k
            on k.model = r.model and k.id = r.id and k.last_ts >= r.from_ts
        where
            r.tf is null and not r.full_build
            and not exists (
                select 1 from {{ barsmith_work_relation('rule5_series') }} as c
                where c.id = k.id and c.model = k.model and c.tf = k.tf and c.period = k.period
            )
        group by r.model, r.id, k.tf, k.period;
        {% call barsmith_work_table('rule5_bases') %}
            {%- for t in ema_rejects_tables() %}
            select
                c.model,
                c.id,
                c.tf,
                c.period,
                c.from_ts,
                coalesce(k.last_ts, p.last_ts) as last_ts,
                coalesce(k.vals, p.vals, '{}'::float8[]) as vals,
                coalesce(k.s1, p.s1, 0) as s1,
                coalesce(k.s2, p.s2, 0) as s2,
                coalesce(k.n, p.n, 0) as n
            from {{ barsmith_work_relation('rule5_series') }} as c
            left join {{ source('barsmith', 'barsmith_ema_stat_windows') }} as k
                on
                    k.model = c.model and k.id = c.id and k.tf = c.tf and k.period = c.period
                    and k.last_ts < c.from_ts
            left join lateral (
                {{ ema_rejects_window(ref(t), 'c', before='c.from_ts', gate='k.model is null') }}
            ) as p on true
            where c.model = {{ sql_string(t) }}
            {% if not loop.last %}union all{% endif %}
            {%- endfor %}
        {% endcall %}
        create index on {{ barsmith_work_relation('rule5_bases') }} (model, id, tf, period);
        analyze {{ barsmith_work_relation('rule5_bases') }} (model, id, tf, period);
        {% call barsmith_work_table('rule5_rows') %}
            {{ ema_rejects_series_windows() }}
        {% endcall %}
    {% endif %}
{% endmacro %}

{#- The series whose rows the EMA models rewrote (their barsmith_changes rows taken over into
    barsmith_ranges()), per model, with the first instant to judge again; a range the EMA model
    deleted (an id from an instant on; in a filtered run only the series it selected) also
    brings back the id's series holding rejects from that instant on, whose verdicts the replace
    step deletes, so those of series the run did not rewrite survive. -#}
{% macro ema_rejects_changed_series() %}
    select
        c.model,
        c.id,
        c.tf,
        c.period,
        min(c.from_ts) as from_ts
    {%- if var('barsmith_engine', 'postgres') == 'citus' %}
    -- (Citus: the same rows as the union below from one outer join of the co-located tables;
    -- Citus does not push that union down here)
    from (
        select
            r.model,
            r.id,
            coalesce(x.tf, r.tf) as tf,
            coalesce(x.period, r.period) as period,
            r.from_ts
        from {{ barsmith_ranges() }} as r
        left join {{ this }} as x
            on
                r.tf is null
                and x.source_table = r.model
                and x.id = r.id
                and x."timestamp" >= r.from_ts
        where not r.full_build and (r.tf is not null or x.id is not null)
    ) as c
    {%- else %}
    from (
        select
            r.model,
            r.id,
            r.tf,
            r.period,
            r.from_ts
        from {{ barsmith_ranges() }} as r
        where r.tf is not null and not r.full_build
        union all
        select
            r.model,
            r.id,
            x.tf,
            x.period,
            r.from_ts
        from {{ barsmith_ranges() }} as r
        inner join {{ this }} as x
            on
                x.source_table = r.model
                and x.id = r.id
                and x."timestamp" >= r.from_ts
        where r.tf is null and not r.full_build
    ) as c
    {%- endif %}
    where c.model not in (select f.model from {{ barsmith_ranges() }} as f where f.full_build)
    group by c.model, c.id, c.tf, c.period
{% endmacro %}

{#- Hook `written`: the windows kept for the next run, equal to what a full build keeps. A whole
    table (a full build, or that table's full build) keeps the last 100 values of each series; a
    changed series its base window moved past its rows from its instant (the base window itself
    when none is left; nothing when the series has no rows). -#}
{% macro ema_rejects_written(new_rows, full_build) %}
    {%- set windows = source('barsmith', 'barsmith_ema_stat_windows') -%}
    {% if full_build %}
        delete from {{ windows }};
    {% else %}
        delete from {{ windows }} as k
        where k.model in (select r.model from {{ barsmith_ranges() }} as r where r.full_build);
        delete from {{ windows }} as k
        using {{ barsmith_work_relation('rule5_bases') }} as b
        where k.model = b.model and k.id = b.id and k.tf = b.tf and k.period = b.period;
        insert into {{ windows }} (model, id, tf, period, last_ts, vals, s1, s2, n)
        select
            b.model,
            b.id,
            b.tf,
            b.period,
            coalesce(a.last_ts, b.last_ts),
            (b.vals || coalesce(a.vals, '{}'))[greatest(1, cardinality(b.vals) + coalesce(a.k, 0) - 99):],
            trim_scale(b.s1 + coalesce(a.s1, 0)),
            trim_scale(b.s2 + coalesce(a.s2, 0)),
            b.n + coalesce(a.n, 0)
        from {{ barsmith_work_relation('rule5_bases') }} as b
        left join (
            select
                r.model,
                r.id,
                r.tf,
                r.period,
                count(*) as k,
                max(r.ts) as last_ts,
                array_agg(r.v order by r.ts) as vals,
                sum((r.vn is not null)::int - (r.leaving is not null)::int) as n,
                sum(coalesce(r.vn, 0) - coalesce(r.leaving, 0)) as s1,
                sum(coalesce(r.vn * r.vn, 0) - coalesce(r.leaving * r.leaving, 0)) as s2
            from {{ barsmith_work_relation('rule5_rows') }} as r
            group by r.model, r.id, r.tf, r.period
        ) as a
            on a.model = b.model and a.id = b.id and a.tf = b.tf and a.period = b.period
        where coalesce(a.last_ts, b.last_ts) is not null;
    {% endif %}
    {%- for t in ema_rejects_tables() %}
        insert into {{ windows }} (model, id, tf, period, last_ts, vals, s1, s2, n)
        {{ ema_rejects_last_windows(t, 'true' if full_build else ema_rejects_full_build_of(t)) }};
    {%- endfor %}
{% endmacro %}

{#- The window kept for each series of `ema_table` (where `condition`, a condition on nothing but
    the run): its last 100 values, read backwards through the unique index. PostgreSQL walks the
    series by the index (one probe for the next (id, tf, period) after each one: a skip scan);
    Citus, which does not run a recursive query over a distributed table, numbers the rows from
    the end in one pass. -#}
{% macro ema_rejects_last_windows(ema_table, condition) %}
    {%- set table = ref(ema_table) -%}
    {%- if var('barsmith_engine', 'postgres') == 'citus' %}
    select
        {{ sql_string(ema_table) }},
        w.id,
        w.tf,
        w.period,
        max(w.ts),
        array_agg(w.v order by w.ts),
        trim_scale(sum(w.v::numeric)),
        trim_scale(sum(w.v::numeric * w.v::numeric)),
        count(w.v)
    from (
        select
            e.id,
            e.tf,
            e.period,
            e.ts,
            {{ ema_rejects_finite('e.ema') }} as v,
            count(*) over (partition by e.id, e.tf, e.period)
            - row_number() over (partition by e.id, e.tf, e.period order by e.ts) as after
        from {{ table }} as e
        where {{ condition }}
    ) as w
    where w.after < 100
    group by w.id, w.tf, w.period
    {%- else %}
    with recursive series as (
        (
            select
                e.id,
                e.tf,
                e.period
            from {{ table }} as e
            where {{ condition }}
            order by e.id, e.tf, e.period
            limit 1
        )
        union all
        select
            n.id,
            n.tf,
            n.period
        from series as s
        cross join lateral (
            select
                e.id,
                e.tf,
                e.period
            from {{ table }} as e
            where (e.id, e.tf, e.period) > (s.id, s.tf, s.period)
            order by e.id, e.tf, e.period
            limit 1
        ) as n
    )

    select
        {{ sql_string(ema_table) }},
        s.id,
        s.tf,
        s.period,
        w.last_ts,
        w.vals,
        w.s1,
        w.s2,
        w.n
    from series as s
    cross join lateral (
        {{ ema_rejects_window(table, 's') }}
    ) as w
    {%- endif %}
{% endmacro %}

{# Hook `finish`: the work tables go (temp tables on PostgreSQL go at commit anyway). #}
{% macro ema_rejects_finish(full_build) %}
    drop table if exists {{ barsmith_work_relation('rule5_series') }}, {{ barsmith_work_relation('rule5_bases') }},
        {{ barsmith_work_relation('rule5_rows') }};
{% endmacro %}
