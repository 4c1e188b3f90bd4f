"""Adapters for the log and feedback exports teams already have (issue 16).

One module per source; each maps a vendor's record to the canonical interaction or feedback
object and says, in its docstring, which field goes where.
"""
