{{ config(materialized="view", tags=["emas"]) }}

-- All six EMA families in one relation (emas.md §1.5, OP-17): alignment_source = the table name
-- without its `ema_` prefix, so multi_tf and multi_tf_v2 rows of the same (id, tf, period, ts)
-- stay apart. A view: never stale. The dual columns (ema_bar ...) are NULL for the two
-- single-EMA families.
{%- set families = [
    ("multi_tf", "ema_multi_tf", false),
    ("multi_tf_v2", "ema_multi_tf_v2", false),
    ("multi_tf_cal_us", "ema_multi_tf_cal_us", true),
    ("multi_tf_cal_iso", "ema_multi_tf_cal_iso", true),
    ("multi_tf_cal_anchor_us", "ema_multi_tf_cal_anchor_us", true),
    ("multi_tf_cal_anchor_iso", "ema_multi_tf_cal_anchor_iso", true),
] %}
{% for source, model, dual in families %}
    select
        '{{ source }}'::text as alignment_source,
        id::integer as id,
        tf,
        period,
        ts,
        tf_days,
        roll,
        ema,
        d1,
        d2,
        d1_roll,
        d2_roll,
        {% if dual -%}
            ema_bar,
            roll_bar,
            d1_bar,
            d2_bar,
            d1_roll_bar,
            d2_roll_bar,
        {%- else -%}
            null::double precision as ema_bar,
            null::boolean as roll_bar,
            null::double precision as d1_bar,
            null::double precision as d2_bar,
            null::double precision as d1_roll_bar,
            null::double precision as d2_roll_bar,
        {%- endif %}
        ingested_at
    from {{ ref(model) }}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
