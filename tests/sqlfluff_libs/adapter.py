"""Stand-in for dbt's `adapter` object when sqlfluff renders models with the jinja templater."""


def quote(identifier: str) -> str:
    return '"' + str(identifier).replace('"', '""') + '"'
