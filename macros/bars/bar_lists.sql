{#- Bar assignment of each snapshot family, as a list of bars to (re)compute: one row per
    (id, tf, bar_seq) with its membership range [lo, hi] over the family's range column of
    int_bars_daily_prep (k = ordinal for rolling bars, ld = local day for calendar/anchored),
    bar_start / bar_end (local dates; NULL for row-count bars), bar_start_eff (NULL = the bar's
    first observed day), is_partial_start, bar_anchor_offset, series_start (first local day of
    S'; NULL = every row is in S'), from_ts (rows before it are not re-emitted) and frame_from
    (k0 / ld0 of the first row at or after from_ts: where a carried-forward window starts).
    Input `series`: one row per (id, tf) to compute with tf (base_unit u, tf_qty n), the id's
    n_rows, first_ld, last_ld, and from_ts / k0 (ordinal of the first row at or after from_ts,
    1 = whole id) / ld0 (its local day) / ld_from. Only bars from the one holding from_ts onward are listed. -#}

{# multi_tf (bars.md §6): bar b holds the rows k in [(b-1)N+1, bN], counted from the id's first row. #}
{% macro bar_list_rolling() %}
    select
        s.id,
        s.tf,
        b::integer as bar_seq,
        s.n as tf_days,
        (b - 1) * s.n + 1 as lo,
        b * s.n as hi,
        null::date as bar_start,
        null::date as bar_end,
        null::date as bar_start_eff,
        false as is_partial_start,
        null::integer as bar_anchor_offset,
        null::date as series_start,
        s.from_ts,
        s.k0 as frame_from
    from (
        select
            *,
            case when k0 <= 1 then 1 else (k0 - 1) / n + 1 end as b_from
        from series
    ) as s
    cross join lateral generate_series(s.b_from, (s.n_rows + s.n - 1) / s.n) as b
{% endmacro %}

{#- cal_iso / cal_us (bars.md §7): windows grouped from A, the first boundary on or after the
    id's first local day F; rows before A are not emitted; bar_seq = window index + 1 (holes
    where a window has no rows, OP-19). -#}
{% macro bar_list_calendar(scheme) %}
    select
        b.id,
        b.tf,
        b.bar_seq,
        b.tf_days,
        b.bar_start as lo,
        b.bar_end as hi,
        b.bar_start,
        b.bar_end,
        b.bar_start as bar_start_eff,
        false as is_partial_start,
        null::integer as bar_anchor_offset,
        b.a as series_start,
        b.from_ts,
        b.ld0 as frame_from
    from (
        select
            s.tf,
            s.id,
            s.a,
            s.from_ts,
            s.ld0,
            (g.i + 1)::integer as bar_seq,
            x.bar_start,
            x.bar_end,
            (x.bar_end - x.bar_start + 1)::integer as tf_days
        from (
            select
                q.*,
                case when q.k0 <= 1 then 0 else {{ calendar_window_index('greatest(q.ld_from, q.a)') }} end as i_from,
                case when q.last_ld < q.a then -1 else {{ calendar_window_index('q.last_ld') }} end as i_last
            from (
                select
                    series.*,
                    7 * series.n as w,
                    {{ barsmith_case('series.u') }}
                        {% if scheme == 'ISO' %}
                            {{ barsmith_when('series.u', "'W'") }} then series.first_ld + (8 - extract(isodow from series.first_ld)::integer) % 7
                        {% else %}
                            {{ barsmith_when('series.u', "'W'") }} then series.first_ld + (7 - extract(dow from series.first_ld)::integer) % 7
                        {% endif %}
                        {{ barsmith_when('series.u', "'M'") }} then (date_trunc('month', (series.first_ld - 1)::timestamp) + interval '1 month')::date
                        else (date_trunc('year', (series.first_ld - 1)::timestamp) + interval '1 year')::date
                    end as a
                from series
            ) as q
        ) as s
        cross join lateral generate_series(s.i_from, s.i_last) as g (i)
        cross join lateral (
            select
                {{ barsmith_case('s.u') }}
                    {{ barsmith_when('s.u', "'W'") }} then s.a + s.w * g.i
                    {{ barsmith_when('s.u', "'M'") }} then (s.a::timestamp + s.n * g.i * interval '1 month')::date
                    else (s.a::timestamp + s.n * g.i * interval '1 year')::date
                end as bar_start,
                {{ barsmith_case('s.u') }}
                    {{ barsmith_when('s.u', "'W'") }} then s.a + s.w * (g.i + 1) - 1
                    {{ barsmith_when('s.u', "'M'") }} then (s.a::timestamp + s.n * (g.i + 1) * interval '1 month')::date - 1
                    else (s.a::timestamp + s.n * (g.i + 1) * interval '1 year')::date - 1
                end as bar_end
        ) as x
    ) as b
{% endmacro %}

{# Window index of local day `d` counted from A in units of N weeks / months / years. #}
{% macro calendar_window_index(d) -%}
    {{ barsmith_case('q.u') }}
        {{ barsmith_when('q.u', "'W'") }} then ({{ d }} - q.a) / q.w
        {{ barsmith_when('q.u', "'M'") }} then (12 * (extract(year from {{ d }}) - extract(year from q.a))
            + extract(month from {{ d }}) - extract(month from q.a))::integer / q.n
        else (extract(year from {{ d }}) - extract(year from q.a))::integer / q.n
    end
{%- endmacro %}

{# Global grid index of local day `d` (bars.md §8.1); `t` has u, n, w and r (the week origin). #}
{% macro anchored_grid_index(t, d) -%}
    {{ barsmith_case(t ~ '.u') }}
        {{ barsmith_when(t ~ '.u', "'W'") }} then floor(({{ d }} - {{ t }}.r)::float8 / {{ t }}.w)::integer
        {{ barsmith_when(t ~ '.u', "'M'") }} then (12 * extract(year from {{ d }})::integer + extract(month from {{ d }})::integer - 1) / {{ t }}.n
        else extract(year from {{ d }})::integer / {{ t }}.n
    end
{%- endmacro %}

{# Start (local date) of grid window g. #}
{% macro anchored_window_start(t, g) -%}
    {{ barsmith_case(t ~ '.u') }}
        {{ barsmith_when(t ~ '.u', "'W'") }} then {{ t }}.r + {{ t }}.w * ({{ g }})
        {{ barsmith_when(t ~ '.u', "'M'") }} then make_date(({{ t }}.n * ({{ g }})) / 12, ({{ t }}.n * ({{ g }})) % 12 + 1, 1)
        else make_date({{ t }}.n * ({{ g }}), 1, 1)
    end
{%- endmacro %}

{#- cal_anchor_iso / cal_anchor_us (bars.md §8): the global grid window of every day; bar_seq =
    dense rank of the non-empty windows (OP-19), so a partial rebuild offsets it by the windows
    before the restart, counting empty ones out; is_partial_start on the first window only. -#}
{% macro bar_list_anchored(scheme, prep) %}
    select
        b.id,
        b.tf,
        b.bar_seq,
        b.tf_days,
        b.ws as lo,
        b.we as hi,
        b.ws as bar_start,
        b.we as bar_end,
        greatest(b.ws, b.first_ld) as bar_start_eff,
        (b.first_ld > b.ws) as is_partial_start,
        (b.ws - b.anchor_ws)::integer as bar_anchor_offset,
        null::date as series_start,
        b.from_ts,
        b.ld0 as frame_from
    from (
        select
            w.*,
            (w.bar_seq_offset + row_number() over (partition by w.tf, w.id order by w.g))::integer as bar_seq,
            (w.we - w.ws + 1)::integer as tf_days
        from (
            select
                s.tf,
                s.id,
                s.first_ld,
                s.anchor_ws,
                s.bar_seq_offset,
                s.from_ts,
                s.ld0,
                g.g,
                x.ws,
                x.we
            from (
                select
                    q.*,
                    {{ anchored_window_start('q', 'q.g_f') }} as anchor_ws,
                    case when q.k0 <= 1 then 0 else q.g_c - q.g_f - e.empties end as bar_seq_offset
                from (
                    select
                        t.*,
                        {{ anchored_grid_index('t', 't.first_ld') }} as g_f,
                        {{ anchored_grid_index('t', 't.last_ld') }} as g_last,
                        case when t.k0 <= 1 then null else {{ anchored_grid_index('t', 't.ld_from') }} end as g_c
                    from (
                        select
                            series.*,
                            7 * series.n as w,
                            date {{ "'1970-01-05'" if scheme == 'ISO' else "'1970-01-04'" }} as r
                        from series
                    ) as t
                ) as q
                cross join lateral (
                    -- partial rebuild only: empty windows in [g(F), g_c), from the rows after a gap
                    select
                        coalesce(sum(greatest(
                            0,
                            least({{ anchored_grid_index('q', 'p.ld') }}, q.g_c)
                            - {{ anchored_grid_index('q', 'p.prev_ld') }} - 1
                        )), 0)::integer as empties
                    from {{ prep }} as p
                    where
                        q.k0 > 1 and p.id = q.id and p.ld - p.prev_ld > 1
                        and p.prev_ld < {{ anchored_window_start('q', 'q.g_c') }}
                ) as e
            ) as s
            cross join lateral generate_series(coalesce(s.g_c, s.g_f), s.g_last) as g (g)
            cross join lateral (
                select
                    v.ws,
                    v.ws_next - 1 as we
                from (
                    values (
                        {{ anchored_window_start('s', 'g.g') }},
                        {{ anchored_window_start('s', 'g.g + 1') }}
                    )
                ) as v (ws, ws_next)
            ) as x
            {%- if var('barsmith_engine', 'postgres') == 'citus' %}
                -- non-empty window (an EXISTS: Citus pushes no LIMIT down beside the generated windows)
                where exists (
                    select 1
                    from {{ prep }} as p
                    where p.id = s.id and p.ld between x.ws and x.we
                )
            {%- else %}
            cross join lateral (
                -- non-empty window: one index probe
                select 1 as present
                from {{ prep }} as p
                where p.id = s.id and p.ld between x.ws and x.we
                limit 1
            ) as ne
            {%- endif %}
        ) as w
    ) as b
{% endmacro %}
