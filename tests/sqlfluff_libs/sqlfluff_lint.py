"""Defined only while sqlfluff lints (a template can tell it is not compiled by dbt)."""
