{{
    config(
        incremental_strategy='replace_ranges',
        range_column='ts',
        unique_key=['id', 'ts'],
        indexes=[
            {'columns': ['id', 'ld'], 'unique': true},
            {'columns': ['id', 'k'], 'unique': true},
        ],
        pre_hook="{{ barsmith_prepare_ranges('int_bars_daily_prep', bars_daily_input(), bars_daily_parts(), whole_ids=true) }}",
        post_hook=[
            "{{ barsmith_record_fingerprints('int_bars_daily_prep', bars_daily_input()) }}",
            "create index if not exists int_bars_daily_prep_gaps on {{ this }} (id, ld) where ld - prev_ld > 1",
            "analyze {{ this }}",
            "{{ barsmith_audit() }}",
        ],
        tags=['bars_prep'],
    )
}}

-- Timeframe-independent preparation of the daily input of the snapshot families (bars.md §4.1),
-- one row per id and observed day, computed once for all five families and all timeframes.
-- Every changed id is rebuilt whole: ordinals, ranks and forward fills span the id's history.
--   k              1-based ordinal of the row in S_id
--   prev_ts/ld     previous observed row (time_open §4.5, missing days §4.7)
--   th / tl        th(r) = coalesce(timehigh, ts), tl(r) = coalesce(timelow, ts)
--   hrank / lrank  per-id ranks: larger = higher high (lower low), ties -> earlier row, so
--                  max(rank) over any set of rows is r* of §4.4 (NULL high/low ignored, OP-22)
--   last_gap_end   largest missing local day before this row
--   next_gap_start smallest missing local day after this row
--   k_mc / mc_ff   ordinal and value of the latest non-NULL market cap so far (forward fill)
with daily as (
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
        d.timelow
    from ({{ bars_daily_source_sql() }}) as d
    {% if is_incremental() %}
        where d.id in (select r.id from {{ ranges_relation() }} as r)
    {% endif %}
),

ordered as (
    select
        *,
        row_number() over w as k,
        lag(ts) over w as prev_ts,
        lag(ld) over w as prev_ld
    from daily
    window w as (partition by id order by ts)
),

ranked as (
    select
        id,
        ts,
        ld,
        extract(year from ld)::integer as yr,
        (12 * extract(year from ld) + extract(month from ld) - 1)::integer as mi,
        k::integer as k,
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
        case
            when high is not null
                then row_number() over (partition by id, high is null order by high asc, k desc)
        end::integer as hrank,
        case
            when low is not null
                then row_number() over (partition by id, low is null order by low desc, k desc)
        end::integer as lrank,
        case when ld - prev_ld > 1 then prev_ld + 1 end as gap_start,
        max(case when ld - prev_ld > 1 then ld - 1 end) over w as last_gap_end,
        (max(k) filter (where market_cap is not null) over w)::integer as k_mc,
        count(market_cap) over w as mc_grp
    from ordered
    window w as (partition by id order by ts)
)

select
    id,
    ts,
    ld,
    yr,
    mi,
    k,
    prev_ts,
    prev_ld,
    open,
    high,
    low,
    close,
    vol,
    market_cap,
    th,
    tl,
    hrank,
    lrank,
    last_gap_end,
    min(gap_start) over (
        partition by id order by ts desc rows between unbounded preceding and 1 preceding
    ) as next_gap_start,
    k_mc,
    first_value(market_cap) over (partition by id, mc_grp order by ts) as mc_ff
from ranked
