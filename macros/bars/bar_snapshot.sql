{#- The generic snapshot of the five families (bars.md §4): for every listed bar, every observed
    day of the bar gets its bar-to-date row. Plan shape: per id (lookup arrays built once) ->
    bars of the id -> the bar's first row (one index probe) -> the bar's rows in index order with
    ONE window (frame = bar-to-date), so no sort of the snapshot rows is needed.
      time_high/low (§4.4): per-id ranks (larger = higher high / lower low, ties -> earlier row),
        so max(rank) over the frame is r*; the arrays th_by_hrank / tl_by_lrank turn it into the
        instant. Ranks are built here over the rows the run reads, never stored.
      market cap: the id-wide forward fill, used when its row is inside the bar.
      first/last missing day (OP-7): from the gaps of prep.
      §4.6 sanity rules applied in order, on raw input only (they cannot fire on the 1D bars).
    Carry-forward (incremental runs on the validated 1D input): a bar that holds rows before
    from_ts is continued from its stored row just before from_ts (the seed), so the window
    reads only the rows from from_ts on. Those stored rows are unchanged by construction (mode
    'range'/'append' means the rows before from_ts are the ones consumed last time). The 1D
    bars satisfy high >= greatest(open, close), low <= least(open, close) and time_low <= ts,
    so no §4.6 rule ever rewrote a stored row and its high/low are the true bar extremes. On
    the raw input (bars_daily_source = 'raw') the §4.6 rules can fire, so bars are recomputed
    from their first row and only rows from from_ts on are emitted. -#}
{% macro bar_snapshot(family, scheme=none) %}
    {{ bar_family_config(family, scheme) }}
    {%- set prep = ref('int_bars_daily_prep') -%}
    {%- set range_col = 'k' if family == 'rolling' else 'ld' -%}
    {%- set anchored = family == 'anchored' -%}
    {%- set raw = var('bars_daily_source', 'bars_1d') == 'raw' -%}
    {%- set carry = is_incremental() and not raw -%}
    with timeframes as (
        {{ barsmith_timeframes(columns='tf, base_unit as u, tf_qty as n') }}
    ),

    {% if is_incremental() %}
        ids as (
            -- per changed id: row count and first / last local day (index probes)
            select
                i.id,
                l.k as n_rows,
                f.ld as first_ld,
                l.ld as last_ld
            from (select distinct r.id from {{ barsmith_ranges() }} as r) as i
            cross join lateral (
                select
                    p.k,
                    p.ld
                from {{ prep }} as p
                where p.id = i.id
                order by p.k desc
                limit 1
            ) as l
            cross join lateral (
                select p.ld from {{ prep }} as p
                where p.id = i.id and p.k = 1
            ) as f
        ),

        restarts as (
            -- per (id, from_ts): ordinal and local day of the first row at or after from_ts
            select
                r.id,
                r.from_ts,
                coalesce(p.k, i.n_rows + 1) as k0,
                coalesce(p.ld, 'infinity'::date) as ld0
            from (select distinct id, from_ts from {{ barsmith_ranges() }}) as r
            inner join ids as i on r.id = i.id
            left join lateral (
                select
                    q.k,
                    q.ld
                from {{ prep }} as q
                where q.id = r.id and q.ts >= r.from_ts
                order by q.ts
                limit 1
            ) as p on true
        ),

        series as (
            select
                t.tf,
                t.u,
                t.n,
                i.id,
                i.n_rows,
                i.first_ld,
                i.last_ld,
                r.from_ts,
                x.k0,
                x.ld0,
                {{ local_day('r.from_ts') }} as ld_from
            from {{ barsmith_ranges() }} as r
            inner join timeframes as t on r.part = t.tf
            inner join ids as i on r.id = i.id
            inner join restarts as x on r.id = x.id and r.from_ts = x.from_ts
        ),
    {% else %}
        ids as (
            select
                id,
                count(*)::integer as n_rows,
                min(ld) as first_ld,
                max(ld) as last_ld
            from {{ prep }}
            group by id
        ),

        series as (
            select
                t.tf,
                t.u,
                t.n,
                i.id,
                i.n_rows,
                i.first_ld,
                i.last_ld,
                '-infinity'::timestamptz as from_ts,
                1 as k0,
                i.first_ld as ld0,
                null::date as ld_from
            from ids as i
            cross join timeframes as t
            -- the snapshot rows come out in this order, bar after bar: in the order of the
            -- table's unique key, so building that index after the load sorts presorted input
            order by i.id, t.tf
        ),
    {% endif %}

    bar_list as (
        {% if family == 'rolling' %}
            {{ bar_list_rolling() }}
        {% elif family == 'calendar' %}
            {{ bar_list_calendar(scheme) }}
        {% else %}
            {{ bar_list_anchored(scheme, prep) }}
        {% endif %}
    ),

    ranked as (
        -- the rows the run reads: from the earliest restart of each id on ({{ 'all rows' if not carry else 'carry-forward' }})
        select
            p.id,
            p.k,
            p.th,
            p.tl,
            case
                when p.high is not null
                    then row_number() over (partition by p.id, p.high is null order by p.high asc, p.k desc)
            end::integer as hrank,
            case
                when p.low is not null
                    then row_number() over (partition by p.id, p.low is null order by p.low desc, p.k desc)
            end::integer as lrank
        from {{ prep }} as p
        inner join (
            select
                id,
                {{ 'min(k0)' if carry else '1' }} as kb
            from series
            group by id
        ) as s on p.id = s.id and p.k >= s.kb
    ),

    lookups as (
        -- per-id lookup arrays (no NULLs, O(1) subscripts): rank by ordinal k - kb + 1, instant by rank
        select
            id,
            min(k) as kb,
            array_agg(coalesce(hrank, 0) order by k) as hrank_by_k,
            array_agg(coalesce(lrank, 0) order by k) as lrank_by_k,
            array_agg(th order by hrank) filter (where hrank is not null) as th_by_hrank,
            array_agg(tl order by lrank) filter (where lrank is not null) as tl_by_lrank
        from ranked
        group by id
    ),

    bar_to_date as (
        select
            b.id,
            b.tf,
            b.tf_days,
            b.bar_seq,
            b.bar_anchor_offset,
            b.is_partial_start,
            b.from_ts,
            f.open,
            f.time_open,
            w.time_close,
            w.close,
            w.volume,
            w.market_cap,
            w.lo_oc,
            w.hi_oc,
            w.t_lo_oc,
            w.count_days,
            w.count_missing_days,
            w.count_missing_days_start,
            w.count_missing_days_interior,
            w.count_missing_days_end,
            w.count_days_remaining,
            w.last_missing_day,
            -- the seed (carried-forward bars) holds the bar's extremes up to from_ts; ties -> seed
            case when s.high is not null and not (w.high_w > s.high) then s.high else w.high_w end as high0,
            case
                when s.high is not null and not (w.high_w > s.high) then s.time_high
                else coalesce(
                    w.th_w,
                    -- no non-NULL high yet (raw mode only): mirrors the low rule
                    case when w.close >= f.open then w.time_close else f.time_open end
                )
            end as time_high,
            case when s.low is not null and not (w.low_w < s.low) then s.low else w.low_w end as low0,
            case when s.low is not null and not (w.low_w < s.low) then s.time_low else w.tl_w end as tl0,
            case
                when f.ld > f.bse then f.bse
                else coalesce(s.first_missing_day, w.gap_w)
            end as first_missing_day
        from lookups as ia
        cross join lateral (select * from bar_list as bl where bl.id = ia.id offset 0) as b
        cross join lateral (
            -- the bar's first row f: open, time_open (§4.5), bar_start_eff (rolling: f's day)
            select
                p.k,
                p.ld,
                p.ts,
                p.open,
                case
                    when p.prev_ts is null or p.prev_ld < b.series_start then p.ts - interval '24 hours'
                    else p.prev_ts
                end + interval '1 millisecond' as time_open,
                coalesce(b.bar_start_eff, p.ld) as bse
            from {{ prep }} as p
            where p.id = b.id and p.{{ range_col }} between b.lo and b.hi
            order by p.{{ range_col }}
            limit 1
        ) as f
        {% if carry %}
            left join lateral (
                -- the seed: the bar's stored row just before from_ts (none when the bar starts later)
                select
                    t.high,
                    t.time_high,
                    t.low,
                    t.time_low,
                    t.volume,
                    t.first_missing_day
                from {{ this }} as t
                where
                    t.id = b.id and t.tf = b.tf and t.time_close >= f.ts and t.time_close < b.from_ts
                    and f.{{ range_col }} < b.frame_from
                order by t.time_close desc
                limit 1
            ) as s on true
        {% else %}
            cross join lateral (
                select
                    null::double precision as high,
                    null::timestamptz as time_high,
                    null::double precision as low,
                    null::timestamptz as time_low,
                    null::double precision as volume,
                    null::date as first_missing_day
            ) as s
        {% endif %}
        cross join lateral (
            select
                r.ts as time_close,
                r.close,
                -- the seed's volume enters the running sum as its first term, so the float
                -- additions happen in the same order as when the bar is summed from its first row
                sum(
                    case when r.{{ range_col }} = b.frame_from and s.volume is not null then s.volume + r.vol else r.vol end
                ) over w as volume,
                max(r.high) over w as high_w,
                min(r.low) over w as low_w,
                ia.th_by_hrank[max(ia.hrank_by_k[r.k - ia.kb + 1]) over w] as th_w,
                ia.tl_by_lrank[max(ia.lrank_by_k[r.k - ia.kb + 1]) over w] as tl_w,
                min(case when r.k > f.k then r.gap_start end) over w as gap_w,
                case when r.k_mc >= f.k then r.mc_ff end as market_cap,
                least(f.open, r.close) as lo_oc,
                greatest(f.open, r.close) as hi_oc,
                case when f.open <= r.close then f.time_open else r.ts end as t_lo_oc,
                (r.k - f.k + 1)::integer as count_days,
                (r.ld - f.bse + 1 - (r.k - f.k + 1))::integer as count_missing_days,
                (f.ld - f.bse)::integer as count_missing_days_start,
                (r.ld - f.ld + 1 - (r.k - f.k + 1))::integer as count_missing_days_interior,
                0 as count_missing_days_end,
                coalesce(b.bar_end - r.ld, b.tf_days - (r.k - f.k + 1))::integer as count_days_remaining,
                case when r.last_gap_end >= f.bse then r.last_gap_end end as last_missing_day
            from {{ prep }} as r
            where
                r.id = b.id
                and r.{{ range_col }} between {{ 'greatest(b.lo, b.frame_from)' if carry else 'b.lo' }} and b.hi
            {#- (partition by id on Citus: one id here; Citus pushes a window down only when it
                partitions by the distribution column) #}
            window w as ({{ 'partition by r.id ' if var('barsmith_engine', 'postgres') == 'citus' }}order by r.{{ range_col }} rows between unbounded preceding and current row)
        ) as w
    ),

    sanity as (
        -- §4.6: 1 late time_low, 2 high floor, 3 low ceiling. On the validated 1D bars no rule
        -- can fire (high >= greatest(open, close) and low <= least(open, close) on every row,
        -- both not null, time_low inside the row's day), so they are only evaluated on raw input.
        select
            *,
            {% if raw %}
                case when tl0 > time_close then lo_oc else low0 end as low1,
                case when tl0 > time_close then t_lo_oc else tl0 end as tl1,
                case when high0 is null or high0 < hi_oc then hi_oc else high0 end as high
            {% else %}
                low0 as low1,
                tl0 as tl1,
                high0 as high
            {% endif %}
        from bar_to_date
        {% if is_incremental() %}
            -- a full build starts at -infinity
            where time_close >= from_ts
        {% endif %}
    ),

    sanity_low as (
        select
            *,
            {{ '(low1 is null or low1 > lo_oc)' if raw else 'false' }} as low_ceiling
        from sanity
    )

    select
        id,
        tf,
        tf_days,
        bar_seq,
        {% if anchored %}bar_anchor_offset,{% endif %}
        time_open,
        time_close,
        time_high,
        case when low_ceiling then t_lo_oc else tl1 end as time_low,
        open,
        high,
        case when low_ceiling then lo_oc else low1 end as low,
        close,
        volume,
        market_cap,
        is_partial_start,
        count_days_remaining > 0 as is_partial_end,
        count_missing_days > 0 as is_missing_days,
        count_days,
        count_days_remaining,
        count_missing_days,
        count_missing_days_start,
        count_missing_days_end,
        count_missing_days_interior,
        case
            when count_missing_days_start > 0 and count_missing_days_interior > 0 then 'start,interior'
            when count_missing_days_start > 0 then 'start'
            when count_missing_days_interior > 0 then 'interior'
        end as missing_days_where,
        time_close as "timestamp",
        time_close + interval '1 millisecond' as last_ts_half_open,
        count_days as pos_in_bar,
        first_missing_day,
        last_missing_day,
        now() as ingested_at
    from sanity_low
{% endmacro %}

{#- Config of a family model (barsmith_incremental, docs/architecture.md): input = the daily
    preparation, one range part per timeframe of the family, the unique (id, tf, time_close) key and
    a small partial index <model>_closes holding the bar closes the EMA families read (emas.md §2.1,
    §4, §5), so they do not walk every snapshot row of a pair to find its few closes. -#}
{% macro bar_family_config(family, scheme=none) %}
    {{ barsmith_config(
        input={'model': 'int_bars_daily_prep', 'ts': 'ts', 'changed_at': 'changed_at'},
        parts='timeframe',
        timeframes={'family': family, 'scheme': scheme},
        signature_vars=['bars_tz', 'bars_daily_source'],
        range_column='time_close',
        unique_key=['id', 'tf', 'time_close'],
        table_indexes=[
            {'name': 'key', 'columns': ['id', 'tf', 'time_close'], 'unique': true},
            {'name': 'closes', 'columns': ['id', 'tf', 'time_close'], 'include': ['close'], 'where': 'not is_partial_end'},
        ],
        change_grain=['id', 'tf'],
        audit_counts={
            'missing_days': 'is_missing_days',
            'partial_end': 'is_partial_end',
            'partial_start': 'is_partial_start',
        },
        tags=['bars_' ~ {'rolling': 'multi_tf', 'calendar': 'cal', 'anchored': 'cal_anchor'}[family]
              ~ ('_' ~ scheme | lower if scheme else '')],
    ) }}
{% endmacro %}
