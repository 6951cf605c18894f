{#- Typed access to the project vars, so a bad --vars value fails with a message naming the var. -#}

{% macro positive_int_var(name) -%}
    {%- set value = var(name) -%}
    {%- if value is none or not modules.re.match('^[1-9][0-9]*$', value | string | trim) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a positive whole number of days, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value | string | trim | int) }}
{%- endmacro %}


{#- The feature cutoff date as 'YYYY-MM-DD'. Explicit var as_of wins; otherwise the day after the latest raw
    event/order (UTC), so a plain `dbt build` snapshots "everything observed so far". -#}
{% macro as_of_date() -%}
    {%- set value = var('as_of', none) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {{ return(data_end_date()) }}
    {%- endif -%}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', text) -%}
        {{ exceptions.raise_compiler_error("var as_of must be a date YYYY-MM-DD, got '" ~ text ~ "'") }}
    {%- endif -%}
    {%- set y, m, d = text.split('-') | map('int') | list -%}
    {%- set leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 -%}
    {%- set month_days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
    {%- if m < 1 or m > 12 or d < 1 or d > month_days[m - 1] -%}
        {{ exceptions.raise_compiler_error("var as_of is not a calendar date: '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}


{#- First day not yet observed: the day after the latest raw event or order (UTC). With no data at all:
    today (UTC). Labels are complete when their window ends on or before this day. -#}
{% macro data_end_date() -%}
    {#- source() is called before the execute check so that every caller depends on these sources. -#}
    {%- set events = source('raw', 'events') -%}
    {%- set orders = source('raw', 'orders') -%}
    {%- if not execute -%}
        {{ return('1970-01-01') }}
    {%- endif -%}
    {%- set query -%}
        select coalesce(
            (greatest((select max(occurred_at) from {{ events }}), (select max(ordered_at) from {{ orders }}))
                at time zone 'UTC')::date + 1,
            (now() at time zone 'UTC')::date
        )::text
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0] | string) }}
{%- endmacro %}


{#- SQL for the cutoff instant of a 'YYYY-MM-DD' date: that day 00:00 UTC, whatever the session time zone. -#}
{% macro cutoff_ts(day) -%}
    (timestamp '{{ day }} 00:00:00' at time zone 'UTC')
{%- endmacro %}


{#- The UTC calendar day of a timestamptz expression (never the session time zone's day). -#}
{% macro utc_date(ts) -%}
    (({{ ts }}) at time zone 'UTC')::date
{%- endmacro %}


{#- x / y, 0 when y is 0 or null: rates over empty windows are 0, not null, so rows stay complete. -#}
{% macro safe_ratio(numerator, denominator) -%}
    coalesce(({{ numerator }})::double precision / nullif(({{ denominator }})::double precision, 0), 0)
{%- endmacro %}
