{{ ema_config(
    timeframes={'family': ['daily', 'rolling']},
    walk='daily',
    v2=true,
    tags=['ema_v2'],
) }}

-- Daily-space EMA with the horizon alpha 2/(d*p+1) on the validated daily closes
-- (emas.md §3); roll = false on every d-th spine day counted from the id's first day.
-- Period eligibility = the seed can be formed (OP-3, OP-19), scaled by var('ema_min_obs_multiplier').
{% call ema_walks(ema_v2_inputs(), dual=false) %}
    cross join
        lateral {{ target.schema }}.ema_walk(
            'daily', s.days, s.tss, s.xs, null, null,
            c.periods, c.windows, c.alphas, c.alphas,
            c.tf_days, s.pos0, c.states
        ) as w
{% endcall %}

select
    id::bigint as id,
    ts,
    tf,
    period,
    ema,
    now() as ingested_at,
    d1,
    d2,
    tf_days,
    roll,
    d1_roll,
    d2_roll
from walks
