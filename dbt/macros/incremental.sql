{#- Which days an incremental daily model recomputes. Each run rebuilds whole days (so aggregates stay exact)
    and merges them on the model's key:
      * every day within late_arrival_lookback_days of the newest day already built, and
      * every day holding a row loaded after (newest load already seen - late_arrival_lookback_days),
        however old that day is (late arrivals, back-filled imports).
    `loaded_at` is the column in `relation` telling when a row arrived; `built_day`/`built_loaded_at` are the
    day and max-arrival columns of this model. -#}
{% macro days_to_rebuild(relation, day, loaded_at, built_day, built_loaded_at) -%}
    {%- set lookback = positive_int_var('late_arrival_lookback_days') -%}
    select distinct {{ day }}
    from {{ relation }}
    where {{ day }} >= (select coalesce(max({{ built_day }}), date '0001-01-01') from {{ this }}) - {{ lookback }}
       or {{ loaded_at }} > (select coalesce(max({{ built_loaded_at }}), '-infinity'::timestamptz) from {{ this }})
                           - interval '{{ lookback }} days'
{%- endmacro %}
