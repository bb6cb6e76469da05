{#- Features (issue 22): technical indicators per completed bar, one macro for the 1D bars and the
    five bar families (a family model differs only in its input, the bar model `bars`).

    Rows: one per completed bar (is_partial_end = false) of `bars`, key (id, tf, time_close), in
    the bar order of each (id, tf) (time_close; gaps in the calendar are not bars: the previous
    bar is the previous completed bar). Indicators (models/features/_features.yml has every
    formula and warm-up): returns, true range, ATR(14) and RSI(14) (Wilder), realized, Parkinson
    and Garman-Klass volatility over 20 bars, Bollinger bands (20, 2), MACD (12, 26, 9), distance
    to the 20-bar high and low. TA-Lib's definitions where TA-Lib has the indicator: same
    warm-up, same seeding, NULL before the warm-up.

    Recursions (Wilder's smoothing of ATR and RSI, the three EMAs of MACD) are the EMA operator
    ema_walk in mode 'daily' (macros/emas/ema_operator.sql): seed = SMA of the first n inputs
    (a NULL input restarts the seed window), then e := a*x + (1-a)*e, alpha 1/n (Wilder) or
    2/(n+1) (EMA). TA-Lib's seeding maps onto it as follows (bar positions from 0):
      TR     NULL on the first bar, so ATR seeds on bar 14 with the mean of TR[1..14];
      RSI    gains and losses from bar 1, both averages seed on bar 14;
      MACD   TA-Lib seeds the fast EMA on the slow EMA's seed bar (25) with the mean of the 12
             closes ending there: the fast walk reads NULL before bar 14; the signal EMA walks
             the MACD line from bar 25 and seeds on bar 33 (mean of line[25..33]); line,
             signal and histogram are NULL before bar 33, as TA-Lib outputs them.
    TA-Lib writes the recursions as (prev*(n-1) + x)/n and (x - prev)*k + prev; the operator's
    a*x + (1-a)*prev differs in the last bits (MACD values 2e-11 relative on the golden data).

    Incremental (barsmith_incremental, ranges per (id, tf) with the 1D instant from_ts from which
    the input changed): the rows with time_close >= from_ts are recomputed, the others stay.
    A (id, tf) whose stored row just before from_ts has every recursion seeded (macd_signal,
    the last to seed, is not NULL) resumes from that row: its atr_14, rsi_avg_gain_14,
    rsi_avg_loss_14, macd_ema_fast_12, macd_ema_slow_26 and macd_signal are the walks' states,
    and the 20 bars before from_ts are re-read for the windows and the previous close. Any
    other (id, tf) (new, rebuilt, or fewer than 34 bars before from_ts) is computed from its
    first bar and only its rows from from_ts on are emitted. -#}

{#- The model: config and SELECT. bars: the bar model; family/scheme: its dim_timeframe family. -#}
{% macro features(bars, family, scheme=none) %}
    {{ features_config(bars, family, scheme) }}
    {{ features_select(bars) }}
{% endmacro %}

{#- Config of a features model. Input = the validated 1D bars; a family model waits until its bar
    model (and the daily preparation the bars are built from) consumed an id's current 1D bars,
    so it never reads bars its upstream has not finished for that id. One part per timeframe
    (features_1d: the one timeframe of family 'daily', '1D'). -#}
{% macro features_config(bars, family, scheme=none) %}
    {%- set daily = family == 'daily' -%}
    {#- (the input: a dependency of every features model, read by the ranges) -#}
    {%- do ref('price_bars_1d') -%}
    {{ barsmith_config(
        input={'model': 'price_bars_1d', 'ts': 'timestamp', 'changed_at': 'src_load_ts'},
        waits_for=[] if daily else ['int_bars_daily_prep', bars],
        defer_stale_ids=true,
        parts='timeframe',
        timeframes={'family': family, 'scheme': scheme},
        signature_vars=['features_days_per_year'] + ([] if daily else ['bars_tz', 'bars_daily_source']),
        range_column='time_close',
        unique_key=['id', 'tf', 'time_close'],
        table_indexes=[
            {'name': 'key', 'columns': ['id', 'tf', 'time_close'], 'unique': true},
        ],
        change_grain=['id', 'tf'],
        audit_counts={'warm_up': 'macd_signal is null'},
        tags=['features'],
    ) }}
{% endmacro %}

{#- Daily bars in a year for the annualization of the D timeframes: var('features_days_per_year'),
    365 for 24/7 markets (the default), 252 for an exchange calendar. -#}
{% macro features_days_per_year() -%}
    {%- set value = var('features_days_per_year', 365) | float(0) -%}
    {#- (sqlfluff's stand-in var is a word and has no `exceptions`: it renders 0.0) -#}
    {%- if value <= 0 and exceptions is defined -%}
        {{ exceptions.raise_compiler_error('features_days_per_year must be a positive number, got ' ~ var('features_days_per_year')) }}
    {%- endif -%}
    {{ value }}::float8
{%- endmacro %}

{#- Resume state of an ema_walk series from a stored smoothed value (NULL: start from scratch):
    the walk continues with e = value and skips nothing (last_day NULL). -#}
{% macro features_walk_state(value) -%}
    case
        when {{ value }} is not null
            then row(
                null, null, {{ value }}, null, {{ value }}, null, null, null, null, null, null, null
            )::{{ target.schema }}.ema_state
    end
{%- endmacro %}

{#- The values of one ema_walk in mode 'daily' over the series `s` (arrays days, tss) and the input
    array `x`: seed window n, alpha, resume value `state` (NULL: from scratch). The result is the
    walk's suffix from its seed (or from the first input when resumed): element i belongs to input
    position cardinality(x) - cardinality(result) + i. `start` (1-based) walks x from that
    position of the series' arrays on. -#}
{% macro features_walk(s, x, n, alpha, state, start=none) -%}
    (
        select array_agg(w.ema order by w.ts)
        from {{ target.schema }}.ema_walk(
            'daily',
            {{ s }}.days{% if start %}[{{ start }}:]{% endif %},
            {{ s }}.tss{% if start %}[{{ start }}:]{% endif %},
            {{ x }},
            null,
            null,
            array[{{ n }}],
            array[{{ n }}],
            array[{{ alpha }}],
            array[{{ alpha }}],
            1,
            0,
            array[{{ features_walk_state(state) }}]
        ) as w
    )
{%- endmacro %}

{#- Value of a walk's suffix array `arr` (series alias g, n inputs) at the row r of the series. -#}
{% macro features_at(arr) -%}
    g.{{ arr }}[r.rn - g.rn0 + 1 - (g.n - coalesce(cardinality(g.{{ arr }}), 0))]
{%- endmacro %}

{#- Completed bars of `bars` (alias b) as the features read them. -#}
{% macro features_bar_columns() -%}
    b.bar_seq,
    b.time_close,
    b.open,
    b.high,
    b.low,
    b.close
{%- endmacro %}

{% macro features_select(bars) %}
    {%- set bars_relation = ref(bars) -%}
    {%- set context_bars = 20 -%}
    with timeframes as (
        -- the model's timeframes (var timeframes filters them) with their bars per year
        select
            tf,
            {{ barsmith_case('base_unit') }}
                {{ barsmith_when('base_unit', "'D'") }} then {{ features_days_per_year() }} / tf_qty
                {{ barsmith_when('base_unit', "'W'") }} then 365.25::float8 / (7 * tf_qty)
                {{ barsmith_when('base_unit', "'M'") }} then 12.0::float8 / tf_qty
                {{ barsmith_when('base_unit', "'Q'") }} then 4.0::float8 / tf_qty
                {{ barsmith_when('base_unit', "'Y'") }} then 1.0::float8 / tf_qty
            end as bars_per_year
        from ({{ barsmith_timeframes(columns='tf, base_unit, tf_qty') }}) as t
    ),

    {% if is_incremental() %}
        restarts as (
            -- per (id, tf) to recompute: from_ts, and the stored row just before it when every
            -- recursion had seeded there (macd_signal seeds last); a vanished id has no input rows
            select
                r.id,
                t.tf,
                r.from_ts,
                s.time_close as resume_ts,
                s.atr_14 as s_atr,
                s.rsi_avg_gain_14 as s_gain,
                s.rsi_avg_loss_14 as s_loss,
                s.macd_ema_fast_12 as s_fast,
                s.macd_ema_slow_26 as s_slow,
                s.macd_signal as s_signal
            from {{ barsmith_ranges() }} as r
            inner join timeframes as t on r.part = t.tf
            -- (an (id, tf) without a completed bar from from_ts on has nothing to write: the
            -- materialization's range delete did the rest)
            inner join lateral (
                select b.time_close
                from {{ bars_relation }} as b
                where b.id = r.id and b.tf = r.part and not b.is_partial_end and b.time_close >= r.from_ts
                order by b.time_close
                limit 1
            ) as first_new on true
            left join lateral (
                select
                    f.time_close,
                    f.atr_14,
                    f.rsi_avg_gain_14,
                    f.rsi_avg_loss_14,
                    f.macd_ema_fast_12,
                    f.macd_ema_slow_26,
                    f.macd_signal
                from {{ this }} as f
                where f.id = r.id and f.tf = r.part and f.time_close < r.from_ts
                order by f.time_close desc
                limit 1
            ) as s on s.macd_signal is not null
            where r.n_rows is not null
        ),

        bar_rows as (
            -- resumed: the {{ context_bars }} bars before from_ts (windows, previous close) and the bars
            -- from from_ts on; otherwise every bar of the (id, tf) (index range scans either way)
            select
                x.*,
                {{ features_bar_columns() }}
            from restarts as x
            cross join lateral (
                select * from (
                    select
                        {{ features_bar_columns() }}
                    from {{ bars_relation }} as b
                    where
                        x.resume_ts is not null
                        and b.id = x.id and b.tf = x.tf and not b.is_partial_end
                        and b.time_close < x.from_ts
                    order by b.time_close desc
                    limit {{ context_bars }}
                ) as before_from
                union all
                select
                    {{ features_bar_columns() }}
                from {{ bars_relation }} as b
                where
                    b.id = x.id and b.tf = x.tf and not b.is_partial_end
                    and b.time_close >= case when x.resume_ts is null then '-infinity'::timestamptz else x.from_ts end
            ) as b
        ),
    {% else %}
        bar_rows as (
            -- one pass over the completed bars (a partial index of the families), in key order
            select
                b.id,
                b.tf,
                '-infinity'::timestamptz as from_ts,
                null::timestamptz as resume_ts,
                null::float8 as s_atr,
                null::float8 as s_gain,
                null::float8 as s_loss,
                null::float8 as s_fast,
                null::float8 as s_slow,
                null::float8 as s_signal,
                {{ features_bar_columns() }}
            from {{ bars_relation }} as b
            where
                not b.is_partial_end
                and b.tf = any(array(select t.tf from timeframes as t))
                and {{ asset_filter('b.id') }}
        ),
    {% endif %}

    steps as (
        -- rn: position in the rows read (1 = the first bar of the (id, tf) unless resumed)
        select
            *,
            lag(close) over w as prev_close,
            row_number() over w as rn
        from bar_rows
        window w as (partition by id, tf order by time_close)
    ),

    terms as (
        select
            *,
            close / nullif(prev_close, 0) - 1 as ret,
            case when close > 0 and prev_close > 0 then ln(close / prev_close) end as log_ret,
            case
                when prev_close is not null
                    then greatest(high - low, abs(high - prev_close), abs(low - prev_close))
            end as true_range,
            case when prev_close is not null then greatest(close - prev_close, 0) end as gain,
            case when prev_close is not null then greatest(prev_close - close, 0) end as loss,
            -- the fast MACD EMA seeds with the slow one (TA-Lib): its input starts on bar 14
            case when resume_ts is not null or rn > 14 then close end as fast_x,
            case when high > 0 and low > 0 then ln(high / low) end as log_hl,
            case when close > 0 and open > 0 then ln(close / open) end as log_co
        from steps
    ),

    windowed as (
        select
            *,
            count(*) over w20 as n20,
            avg(close) over w20 as sma_20,
            stddev_pop(close) over w20 as sd_20,
            count(log_ret) over w20 as n_log_ret,
            stddev_samp(log_ret) over w20 as sd_log_ret,
            count(log_hl) over w20 as n_log_hl,
            avg(log_hl * log_hl) over w20 as mean_hl2,
            count(log_hl * log_co) over w20 as n_gk,
            avg(0.5 * log_hl * log_hl - (2 * ln(2.0::float8) - 1) * log_co * log_co) over w20 as mean_gk,
            max(high) over w20 as high_20,
            min(low) over w20 as low_20
        from terms
        window w20 as (partition by id, tf order by time_close rows between 19 preceding and current row)
    ),

    series as (
        -- one row per (id, tf): the walks' inputs, from the resume row on (or the first bar)
        select
            id,
            tf,
            -- (the same on every row of the series)
            min(s_atr) as s_atr,
            min(s_gain) as s_gain,
            min(s_loss) as s_loss,
            min(s_fast) as s_fast,
            min(s_slow) as s_slow,
            min(s_signal) as s_signal,
            min(rn) as rn0,
            count(*)::integer as n,
            array_agg((time_close at time zone 'UTC')::date order by rn) as days,
            array_agg(time_close order by rn) as tss,
            array_agg(true_range order by rn) as trs,
            array_agg(gain order by rn) as gains,
            array_agg(loss order by rn) as losses,
            array_agg(close order by rn) as closes,
            array_agg(fast_x order by rn) as fast_xs
        from terms
        where resume_ts is null or time_close >= from_ts
        group by id, tf
    ),

    walks as materialized (
        -- (materialized, like macd and walked: each walk runs once per series, not once per
        -- reference to its result)
        select
            s.*,
            {{ features_walk('s', 's.trs', 14, '1.0::float8 / 14', 's.s_atr') }} as atr,
            {{ features_walk('s', 's.gains', 14, '1.0::float8 / 14', 's.s_gain') }} as avg_gain,
            {{ features_walk('s', 's.losses', 14, '1.0::float8 / 14', 's.s_loss') }} as avg_loss,
            {{ features_walk('s', 's.fast_xs', 12, target.schema ~ '.ema_alpha_bar(12)', 's.s_fast') }} as ema_fast,
            {{ features_walk('s', 's.closes', 26, target.schema ~ '.ema_alpha_bar(26)', 's.s_slow') }} as ema_slow
        from series as s
    ),

    macd as materialized (
        -- the MACD line where both EMAs exist (they seed on the same bar)
        select
            w.*,
            array(
                select u.f - u.sl
                from unnest(w.ema_fast, w.ema_slow) with ordinality as u (f, sl, k)
                order by u.k
            ) as lines
        from walks as w
    ),

    walked as materialized (
        select
            m.*,
            {{ features_walk('m', 'm.lines', 9, target.schema ~ '.ema_alpha_bar(9)', 'm.s_signal',
                             start='m.n - cardinality(m.lines) + 1') }} as signals
        from macd as m
    ),

    valued as (
        select
            r.*,
            {{ features_at('atr') }} as atr_14,
            {{ features_at('avg_gain') }} as rsi_avg_gain_14,
            {{ features_at('avg_loss') }} as rsi_avg_loss_14,
            {{ features_at('ema_fast') }} as macd_ema_fast_12,
            {{ features_at('ema_slow') }} as macd_ema_slow_26,
            {{ features_at('signals') }} as macd_signal,
            case when r.n20 = 20 then r.sma_20 end as bb_middle_20,
            case when r.n20 = 20 then r.sma_20 + 2 * r.sd_20 end as bb_upper_20,
            case when r.n20 = 20 then r.sma_20 - 2 * r.sd_20 end as bb_lower_20,
            t.bars_per_year
        from windowed as r
        inner join walked as g on r.id = g.id and r.tf = g.tf
        inner join timeframes as t on r.tf = t.tf
        where r.time_close >= r.from_ts
    )

    select
        id,
        tf,
        time_close,
        bar_seq,
        open,
        high,
        low,
        close,
        ret,
        log_ret,
        true_range,
        atr_14,
        case
            when rsi_avg_gain_14 + rsi_avg_loss_14 = 0 then 0
            else 100 * (rsi_avg_gain_14 / (rsi_avg_gain_14 + rsi_avg_loss_14))
        end as rsi_14,
        case when n_log_ret = 20 then sd_log_ret end as realized_vol_20,
        case when n_log_ret = 20 then sd_log_ret * sqrt(bars_per_year) end as realized_vol_20_ann,
        case when n_log_hl = 20 then sqrt(mean_hl2 / (4 * ln(2.0::float8))) end as parkinson_vol_20,
        case when n_log_hl = 20 then sqrt(mean_hl2 / (4 * ln(2.0::float8))) * sqrt(bars_per_year) end
            as parkinson_vol_20_ann,
        case when n_gk = 20 then sqrt(greatest(mean_gk, 0)) end as garman_klass_vol_20,
        case when n_gk = 20 then sqrt(greatest(mean_gk, 0)) * sqrt(bars_per_year) end as garman_klass_vol_20_ann,
        bb_middle_20,
        bb_upper_20,
        bb_lower_20,
        (close - bb_lower_20) / nullif(bb_upper_20 - bb_lower_20, 0) as bb_pct_b_20,
        (bb_upper_20 - bb_lower_20) / nullif(bb_middle_20, 0) as bb_bandwidth_20,
        case when macd_signal is not null then macd_ema_fast_12 - macd_ema_slow_26 end as macd_line,
        macd_signal,
        macd_ema_fast_12 - macd_ema_slow_26 - macd_signal as macd_hist,
        case when n20 = 20 then close / nullif(high_20, 0) - 1 end as dist_high_20,
        case when n20 = 20 then close / nullif(low_20, 0) - 1 end as dist_low_20,
        rsi_avg_gain_14,
        rsi_avg_loss_14,
        macd_ema_fast_12,
        macd_ema_slow_26,
        bars_per_year
    from valued
{% endmacro %}
