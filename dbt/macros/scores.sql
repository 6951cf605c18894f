{#- Exponential time-decay weight of a day: 0.5 ^ ((as_of - day) / half_life_days). -#}
{% macro decay_weight(day, as_of, half_life_days) -%}
    power(0.5, (({{ as_of }}) - ({{ day }}))::double precision / {{ half_life_days }})
{%- endmacro %}


{#- Rank of x in [0, 1] across the rows of the query: 0 when x is 0 (never touched), else the cumulative
    share of rows with a value <= x (the best row gets 1). Robust to outliers, unlike x / max(x). -#}
{% macro rank01(x) -%}
    case when ({{ x }}) > 0 then cume_dist() over (order by {{ x }}) else 0 end
{%- endmacro %}
