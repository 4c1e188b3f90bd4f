"""Privacy operations on what Ratchet keeps: erasure, retention, consent and audits (issue 12).

The flywheel keeps user data on purpose; these modules are how it gives it back and proves what
it holds. Each module owns one operation; flows in ``flows/`` run them with Prefect.
"""
