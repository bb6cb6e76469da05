{#- The generic snapshot of the five families (bars.md §4): for every listed bar, every observed
    day of the bar gets its bar-to-date row. Plan shape: per id (lookup arrays built once) ->
    bars of the id -> the bar's first row (one index probe) -> the bar's rows in index order with
    ONE window (frame = bar-to-date), so no sort of the snapshot rows is needed.
      time_high/low (§4.4): max(hrank)/max(lrank) over the frame is r* (ties -> earlier row);
        per-id arrays th_by_hrank / tl_by_lrank turn it into the instant.
      market cap: the id-wide forward fill, used when its row is inside the bar.
      first/last missing day (OP-7): from the id-wide gap neighbours of prep.
      §4.6 sanity rules applied in order (they only fire on raw input).
    Rows before the bar's from_ts are not re-emitted (they cannot change). -#}
{% macro bar_snapshot(family, scheme=none) %}
    {%- set prep = ref('int_bars_daily_prep') -%}
    {%- set range_col = 'k' if family == 'rolling' else 'ld' -%}
    {%- set anchored = family == 'anchored' -%}
    with timeframes as (
        select
            tf,
            base_unit as u,
            tf_qty as n
        from {{ ref('dim_timeframe') }}
        where
            {{ bar_family_selector(family, scheme) }}
            and {{ timeframe_filter('tf') }}
    ),

    ids as (
        select
            id,
            count(*)::integer as n_rows,
            min(ld) as first_ld,
            max(ld) as last_ld
        from {{ prep }}
        {% if is_incremental() %}
            where id in (select r.id from {{ ranges_relation() }} as r)
        {% endif %}
        group by id
    ),

    {% if is_incremental() %}
        restarts as (
            -- per (id, from_ts): ordinal of the first row at or after from_ts (1 = whole id)
            select
                r.id,
                r.from_ts,
                (count(p.k) + 1)::integer as k0
            from (select distinct id, from_ts from {{ ranges_relation() }}) as r
            left join {{ prep }} as p on r.id = p.id and p.ts < r.from_ts
            group by r.id, r.from_ts
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
                {{ local_day('r.from_ts') }} as ld_from
            from {{ ranges_relation() }} as r
            inner join timeframes as t on r.part = t.tf
            inner join ids as i on r.id = i.id
            inner join restarts as x on r.id = x.id and r.from_ts = x.from_ts
        ),
    {% else %}
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
                null::date as ld_from
            from ids as i
            cross join timeframes as t
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

    lookups as (
        -- per-id lookup arrays (no NULLs, O(1) subscripts)
        select
            p.id,
            array_agg(p.th order by p.hrank) filter (where p.hrank is not null) as th_by_hrank,
            array_agg(p.tl order by p.lrank) filter (where p.lrank is not null) as tl_by_lrank
        from {{ prep }} as p
        where p.id in (select s.id from series as s)
        group by p.id
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
            w.*,
            case when w.tl0 > w.time_close then w.lo_oc else w.low0 end as low1,
            case when w.tl0 > w.time_close then w.t_lo_oc else w.tl0 end as tl1
        from lookups as ia
        cross join lateral (select * from bar_list as bl where bl.id = ia.id offset 0) as b
        cross join lateral (
            -- the bar's first row f: open, time_open (§4.5), bar_start_eff (rolling: f's day)
            select
                p.k,
                p.ld,
                p.open,
                p.next_gap_start,
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
        cross join lateral (
            select
                r.ts as time_close,
                r.close,
                f.open,
                f.time_open,
                sum(r.vol) over w as volume,
                max(r.high) over w as high0,
                min(r.low) over w as low0,
                ia.tl_by_lrank[max(r.lrank) over w] as tl0,
                -- no non-NULL high yet (raw mode only): mirrors the low rule
                coalesce(
                    ia.th_by_hrank[max(r.hrank) over w],
                    case when r.close >= f.open then r.ts else f.time_open end
                ) as time_high,
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
                case
                    when f.ld > f.bse then f.bse
                    when f.next_gap_start < r.ld then f.next_gap_start
                end as first_missing_day,
                case when r.last_gap_end >= f.bse then r.last_gap_end end as last_missing_day
            from {{ prep }} as r
            where r.id = b.id and r.{{ range_col }} between b.lo and b.hi
            window w as (order by r.{{ range_col }} rows between unbounded preceding and current row)
        ) as w
    ),

    sanity as (
        -- §4.6: 1 late time_low (above), 2 high floor, 3 low ceiling
        select
            *,
            case when high0 is null or high0 < hi_oc then hi_oc else high0 end as high,
            (low1 is null or low1 > lo_oc) as low_ceiling
        from bar_to_date
        where time_close >= from_ts
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
    from sanity
{% endmacro %}

{# Timeframe selectors of bars.md OP-17 (results equal the as-coded selection on the seed). #}
{% macro bar_family_selector(family, scheme=none) -%}
    {%- if family == 'rolling' -%}
        alignment_type = 'tf_day' and tf ~ '^[0-9]+D$' and tf_qty >= 2 and is_canonical and not is_intraday
    {%- elif family == 'calendar' -%}
        alignment_type = 'calendar' and not calendar_anchor
        and (tf ~ '^[0-9]+W_CAL_{{ scheme }}$' or tf ~ '^[0-9]+[MY]_CAL$')
    {%- else -%}
        alignment_type = 'calendar' and calendar_anchor
        and (tf ~ '^[0-9]+W_CAL_ANCHOR_{{ scheme }}$' or tf ~ '^[0-9]+[MY]_CAL_ANCHOR$')
    {%- endif -%}
{%- endmacro %}

{# Range parts of a family: one per timeframe, signed with everything its rows depend on. #}
{% macro bar_family_parts(family, scheme=none) -%}
    select
        tf as part,
        md5({{ sql_string(var('bars_tz', 'America/New_York') ~ '|' ~ var('bars_daily_source', 'bars_1d')) }}
            || '|' || base_unit || '|' || tf_qty || '|' || tf_days_nominal) as signature
    from {{ ref('dim_timeframe') }}
    where {{ bar_family_selector(family, scheme) }} and {{ timeframe_filter('tf') }}
{%- endmacro %}

{% macro bar_family_config(model, family, scheme=none) %}
    {%- set scheme_arg = "'" ~ scheme ~ "'" if scheme else 'none' -%}
    {{ config(
        incremental_strategy='replace_ranges',
        range_column='time_close',
        range_part_match='t.tf = r.part',
        range_part_columns=['tf'],
        unique_key=['id', 'tf', 'time_close'],
        indexes=[{'columns': ['id', 'tf', 'time_close'], 'unique': true}],
        pre_hook="{{ barsmith_prepare_ranges('" ~ model ~ "', bars_daily_input(), bar_family_parts('" ~ family ~ "', " ~ scheme_arg ~ ")) }}",
        post_hook=[
            "{{ barsmith_record_fingerprints('" ~ model ~ "', bars_daily_input()) }}",
            "{{ barsmith_audit() }}",
        ],
        audit_counts={
            'missing_days': 'is_missing_days',
            'partial_end': 'is_partial_end',
            'partial_start': 'is_partial_start',
        },
        tags=['bars_' ~ model.replace('price_bars_multi_tf', 'multi_tf').replace('multi_tf_', '')],
    ) }}
{% endmacro %}
