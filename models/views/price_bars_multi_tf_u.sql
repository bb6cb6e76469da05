{{ config(materialized="view", tags=["bars"]) }}

-- The five snapshot-bar families in one relation: alignment_source = the table name without its
-- `price_bars_` prefix (multi_tf, multi_tf_cal_us, ...), part of the key with (id, tf, time_close)
-- because the calendar families share their month and year timeframes. A view: never stale.
-- bar_anchor_offset exists in the anchored families only (NULL elsewhere).
{%- set families = [
    ("multi_tf", "price_bars_multi_tf", false),
    ("multi_tf_cal_us", "price_bars_multi_tf_cal_us", false),
    ("multi_tf_cal_iso", "price_bars_multi_tf_cal_iso", false),
    ("multi_tf_cal_anchor_us", "price_bars_multi_tf_cal_anchor_us", true),
    ("multi_tf_cal_anchor_iso", "price_bars_multi_tf_cal_anchor_iso", true),
] %}
{% for source, model, anchored in families %}
    select
        '{{ source }}'::text as alignment_source,
        id,
        tf,
        tf_days,
        bar_seq,
        {% if anchored -%}
            bar_anchor_offset,
        {%- else -%}
            null::integer as bar_anchor_offset,
        {%- endif %}
        time_open,
        time_close,
        time_high,
        time_low,
        "timestamp",
        last_ts_half_open,
        open,
        high,
        low,
        close,
        volume,
        market_cap,
        is_partial_start,
        is_partial_end,
        is_missing_days,
        count_days,
        count_days_remaining,
        pos_in_bar,
        count_missing_days,
        count_missing_days_start,
        count_missing_days_end,
        count_missing_days_interior,
        missing_days_where,
        first_missing_day,
        last_missing_day,
        ingested_at
    from {{ ref(model) }}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
