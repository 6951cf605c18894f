{#- Every numeric column of the model is filled and >= 0 (counts, amounts, rates, scores), except the columns
    named in `nullable` (may be null or any value). Columns are looked up at run time, so a new feature
    column is covered without editing YAML. One query for all columns. -#}
{% test numeric_columns_complete(model, nullable=[]) %}
{%- set checked = [] -%}
{%- for column in adapter.get_columns_in_relation(model) -%}
    {%- if column.name not in nullable and column.is_number() -%}
        {%- do checked.append(column.name) -%}
    {%- endif -%}
{%- endfor %}
select *
from {{ model }}
where false
{%- for name in checked %}
   or {{ adapter.quote(name) }} is null or {{ adapter.quote(name) }} < 0
{%- endfor %}
{% endtest %}
