{#- Point-in-time guard: a timestamp used by a snapshot row must lie strictly before the row's cutoff,
    `as_of_column` 00:00 UTC. Any row returned read data it was not allowed to see. -#}
{% test before_as_of(model, column_name, as_of_column='as_of') %}
select *
from {{ model }}
where {{ column_name }} >= ({{ as_of_column }}::timestamp at time zone 'UTC')
{% endtest %}
