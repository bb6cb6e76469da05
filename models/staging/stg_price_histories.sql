-- Typed raw daily rows plus their local day (bars.md §0, §1). Nothing else happens here.
with source as (
    select * from {{ source('raw', 'price_histories') }}
),

typed as (
    select
        id::integer as id,
        name::text as name,
        timeopen::timestamptz as timeopen,
        timeclose::timestamptz as timeclose,
        timehigh::timestamptz as timehigh,
        timelow::timestamptz as timelow,
        "timestamp"::timestamptz as "timestamp",
        open::double precision as open,
        high::double precision as high,
        low::double precision as low,
        close::double precision as close,
        volume::double precision as volume,
        marketcap::double precision as marketcap,
        source_file::text as source_file,
        load_ts::timestamptz as load_ts,
        {{ local_day('"timestamp"') }} as ld
    from source
)

select * from typed
