{#- Models land in exactly the schema their folder names (staging, intermediate, marts), never
    "<target schema>_staging": the raw schema DDL, Feast, Great Expectations and serving all read fixed names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
