{{
    barsmith_config(
        input=bars_daily_input_spec(),
        signature_vars=['bars_tz', 'bars_daily_source'],
        range_column='ts',
        unique_key=['id', 'ts'],
        table_indexes=[
            {'name': 'key', 'columns': ['id', 'ts'], 'unique': true},
            {'name': 'ld', 'columns': ['id', 'ld'], 'unique': true},
            {'name': 'k', 'columns': ['id', 'k'], 'unique': true},
            {'name': 'gaps', 'columns': ['id', 'ld'], 'where': 'ld - prev_ld > 1'},
        ],
        tags=['bars_prep'],
    )
}}

-- Timeframe-independent preparation of the daily input of the snapshot families (bars.md §4.1),
-- one row per id and observed day, computed once for all five families and all timeframes.
-- Every column looks backwards only, so appended or corrected rows are recomputed from the
-- first changed row on, carrying the stored row just before it (a new or backfilled id, or a
-- row inserted or deleted before the last seen one, rebuilds the id: mode 'rebuild').
--   k              1-based ordinal of the row in S_id
--   prev_ts/ld     previous observed row (time_open §4.5, missing days §4.7)
--   th / tl        th(r) = coalesce(timehigh, ts), tl(r) = coalesce(timelow, ts)
--   gap_start      first missing local day between the previous row and this one
--   last_gap_end   largest missing local day before this row
--   k_mc / mc_ff   ordinal and value of the latest non-NULL market cap so far (forward fill)
with
{% if is_incremental() %}
    restarts as (
        -- per changed id: the stored row just before the first recomputed one (none = rebuild)
        select
            r.id,
            r.from_ts,
            s.k as k_before,
            s.ts as ts_before,
            s.ld as ld_before,
            s.last_gap_end as last_gap_end_before,
            s.k_mc as k_mc_before,
            s.mc_ff as mc_ff_before
        from {{ barsmith_ranges() }} as r
        left join lateral (
            select
                p.k,
                p.ts,
                p.ld,
                p.last_gap_end,
                p.k_mc,
                p.mc_ff
            from {{ this }} as p
            where p.id = r.id and p.ts < r.from_ts
            order by p.ts desc
            limit 1
        ) as s on true
    ),
{% endif %}

daily as (
    select
        d.id,
        d.ts,
        {{ local_day('d.ts') }} as ld,
        d.open,
        d.high,
        d.low,
        d.close,
        d.volume,
        d.market_cap,
        d.timehigh,
        d.timelow,
        d.changed_at,
        {% if is_incremental() %}
            x.k_before,
            x.ts_before,
            x.ld_before,
            x.last_gap_end_before,
            x.k_mc_before,
            x.mc_ff_before
        {% else %}
            null::integer as k_before,
            null::timestamptz as ts_before,
            null::date as ld_before,
            null::date as last_gap_end_before,
            null::integer as k_mc_before,
            null::double precision as mc_ff_before
        {% endif %}
    from ({{ bars_daily_source_sql() }}) as d
    {% if is_incremental() %}
        inner join restarts as x on d.id = x.id and d.ts >= x.from_ts
    {% endif %}
),

ordered as (
    select
        *,
        (coalesce(k_before, 0) + row_number() over w)::integer as k,
        coalesce(lag(ts) over w, ts_before) as prev_ts,
        coalesce(lag(ld) over w, ld_before) as prev_ld
    from daily
    window w as (partition by id order by ts)
),

filled as (
    select
        *,
        case when ld - prev_ld > 1 then prev_ld + 1 end as gap_start,
        greatest(max(case when ld - prev_ld > 1 then ld - 1 end) over w, last_gap_end_before) as last_gap_end,
        coalesce((max(k) filter (where market_cap is not null) over w)::integer, k_mc_before) as k_mc,
        count(market_cap) over w as mc_grp
    from ordered
    window w as (partition by id order by ts)
)

select
    id,
    ts,
    ld,
    k,
    prev_ts,
    prev_ld,
    open,
    high,
    low,
    close,
    coalesce(volume, 0) as vol,
    market_cap,
    coalesce(timehigh, ts) as th,
    coalesce(timelow, ts) as tl,
    gap_start,
    last_gap_end,
    k_mc,
    changed_at,
    case
        when mc_grp = 0 then mc_ff_before
        else first_value(market_cap) over (partition by id, mc_grp order by ts)
    end as mc_ff
from filled
