{#- One row per key from a versions table (raw.user_versions, raw.item_versions): the version in force at the
    cutoff of date `as_of` = the latest loaded (valid_from) before the cutoff; for a key first loaded after it,
    its first version (nothing earlier is known, so the first version counts as having always held). Ties in
    valid_from (two writes in one transaction) go to the later write. Rebuilding a past cutoff gives the same
    rows whenever it runs. -#}
{% macro version_as_of(relation, key, as_of) -%}
    select *
    from (
        select
            v.*,
            row_number() over (
                partition by v.{{ key }}
                order by
                    v.valid_from >= {{ cutoff_ts(as_of) }},
                    case when v.valid_from < {{ cutoff_ts(as_of) }} then v.valid_from end desc nulls last,
                    v.valid_from,
                    v.version_id desc
            ) as version_rank
        from {{ relation }} as v
    ) as ranked
    where version_rank = 1
{%- endmacro %}
