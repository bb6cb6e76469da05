"""barsmith driver: thin Typer orchestration around dbt."""
