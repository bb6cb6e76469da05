{{ ema_config(
    timeframes={'family': ['daily', 'rolling']},
    walk='preview',
    bars='price_bars_multi_tf',
    closes='rolling',
    tags=['ema_multi_tf'],
) }}

-- Bar-space EMA over the rolling bars with a one-step daily preview (emas.md §2): canonical
-- days carry the bar EMA E_k (alpha 2/(p+1)), other days alpha*x + (1-alpha)*E*; tf = 1D
-- uses the validated daily bars as closes (§2.3). No synthetic fallback bars (OP-18).
{% call ema_walks(ema_multi_tf_inputs(), dual=false) %}
    cross join
        lateral {{ target.schema }}.ema_walk(
            'preview', s.days, s.tss, s.xs, c.bar_days, c.bar_closes,
            c.periods, c.periods, c.alphas, c.alphas,
            null, 0, c.states
        ) as w
{% endcall %}

select
    id,
    tf,
    ts,
    period,
    ema,
    tf_days,
    roll,
    d1_roll,
    d2_roll,
    d1,
    d2,
    now() as ingested_at
from walks
