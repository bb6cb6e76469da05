"""Stand-in for dbt's `api` object when sqlfluff renders models with the jinja templater."""


class Relation:
    """api.Relation.create(...) renders as schema.identifier."""

    @staticmethod
    def create(database=None, schema="public", identifier="relation", **_kwargs) -> str:
        return f"{schema}.{identifier}"
