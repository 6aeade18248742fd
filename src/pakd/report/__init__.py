"""Reporting: Markdown tables and plots."""
from .tables import fmt, markdown_table

__all__ = ["fmt", "markdown_table"]
