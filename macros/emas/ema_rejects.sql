{#- Output validation of emas.md §7.1 (OP-14, amended 2026-12-06): point-in-time verdicts.

    For an EMA row (id, tf, period, ts) the first failing check of
      1 nan                        ema is null or NaN
      2 infinity                   ema is +/-Infinity
      3 negative                   ema < 0
      4 out_of_price_bounds        ema < 0.5 * min(close) or ema > 2 * max(close), over the validated
                                   1D closes of the id with time_close in [ts - 90 days, ts]
                                   (skipped when there is none)
      5 out_of_statistical_bounds  ema outside mean +/- 3 * stddev_samp of the previous 100 rows of
                                   the series (their finite ema values; skipped when fewer than 10)
    A verdict depends only on the data, never on the day the check runs, so ema_rejects is
    maintained like every other model: a run re-judges exactly the rows the EMA models rewrote
    since its last run (their barsmith_changes rows, per series from an instant on), reading
    them and the 100 rows before each series' first one through the EMA tables' unique indexes.
    The statistics are computed in exact numeric arithmetic over a window of the same rows
    whichever way they are read, so an incremental verdict equals the full build's. -#}

{#- The EMA rows of `ema_table` to judge, with the statistics of rule 5: every row on a full build
    (or when the taken changes hold a full build of that table), else the rows of the changed
    series from their first changed instant on. -#}
{% macro ema_rows_to_judge(ema_table) %}
    {%- set table = ref(ema_table) -%}
    {%- set whole_table -%}
        exists (
            select 1 from {{ barsmith_ranges() }} as r
            where r.model = {{ sql_string(ema_table) }} and r.full_build
        )
    {%- endset -%}
    select
        {{ sql_string(ema_table) }}::text as source_table,
        x.id,
        x.tf,
        x.period,
        x.ts,
        x.ema,
        x.stat_n,
        x.stat_mean,
        x.stat_std
    from (
        select
            e.id::integer as id,
            e.tf,
            e.period,
            e.ts,
            e.ema,
            e.from_ts,
            count(e.v) over w as stat_n,
            avg(e.v) over w as stat_mean,
            stddev_samp(e.v) over w as stat_std
        from (
            select
                e.id,
                e.tf,
                e.period,
                e.ts,
                e.ema,
                e.from_ts,
                -- rule 5 reads the finite values, in exact numeric arithmetic
                case when e.ema not in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) then e.ema::numeric end
                    as v
            from (
                select
                    t.id,
                    t.tf,
                    t.period,
                    t.ts,
                    t.ema,
                    '-infinity'::timestamptz as from_ts
                from {{ table }} as t
                {% if is_incremental() %}
                    where {{ whole_table }}
                    union all
                    select
                        s.id,
                        s.tf,
                        s.period,
                        t.ts,
                        t.ema,
                        s.from_ts
                    from (
                        select
                            c.id,
                            c.tf,
                            c.period,
                            min(c.from_ts) as from_ts
                        {%- if var('barsmith_engine', 'postgres') == 'citus' %}
                        -- (Citus: the same rows as the union below from one outer join of the
                        -- co-located tables; Citus does not push that union down here)
                        from (
                            select
                                r.id,
                                coalesce(x.tf, r.tf) as tf,
                                coalesce(x.period, r.period) as period,
                                r.from_ts
                            from {{ barsmith_ranges() }} as r
                            left join {{ this }} as x
                                on
                                    r.tf is null
                                    and x.source_table = {{ sql_string(ema_table) }}
                                    and x.id = r.id
                                    and x."timestamp" >= r.from_ts
                            where
                                r.model = {{ sql_string(ema_table) }} and not r.full_build
                                and (r.tf is not null or x.id is not null)
                        ) as c
                        {%- else %}
                        from (
                            select
                                r.id,
                                r.tf,
                                r.period,
                                r.from_ts
                            from {{ barsmith_ranges() }} as r
                            where r.model = {{ sql_string(ema_table) }} and r.tf is not null and not r.full_build
                            union all
                            -- a range the EMA model deleted (an id from an instant on; in a filtered
                            -- run only the series it selected): the series of the id holding rejects
                            -- from that instant on are judged again, so the verdicts of series the
                            -- run did not rewrite survive the delete of the id's rejects
                            select
                                r.id,
                                x.tf,
                                x.period,
                                r.from_ts
                            from {{ barsmith_ranges() }} as r
                            inner join {{ this }} as x
                                on
                                    x.source_table = {{ sql_string(ema_table) }}
                                    and x.id = r.id
                                    and x."timestamp" >= r.from_ts
                            where r.model = {{ sql_string(ema_table) }} and r.tf is null and not r.full_build
                        ) as c
                        {%- endif %}
                        group by c.id, c.tf, c.period
                    ) as s
                    cross join lateral (
                        -- the series' rows from the 100th row before from_ts on (index range scans)
                        select
                            t.ts,
                            t.ema
                        from {{ table }} as t
                        where
                            t.id = s.id and t.tf = s.tf and t.period = s.period
                            and t.ts >= coalesce((
                                select p.ts from {{ table }} as p
                                where p.id = s.id and p.tf = s.tf and p.period = s.period and p.ts < s.from_ts
                                order by p.ts desc
                                limit 1 offset 99
                            ), '-infinity'::timestamptz)
                    ) as t
                    where not {{ whole_table }}
                {% endif %}
            ) as e
        ) as e
        window w as (partition by e.id, e.tf, e.period order by e.ts rows between 100 preceding and 1 preceding)
    ) as x
    where x.ts >= x.from_ts
{% endmacro %}
