"""Stand-in for dbt's `target` object when sqlfluff renders models with the jinja templater."""

schema = "public"
name = "default"
type = "postgres"
